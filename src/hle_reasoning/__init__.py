"""hle-reasoning: QLoRA + GRPO on Humanity's Last Exam with Llama 3.2 Vision, as a Kedro project.

"The proposal" in this package is the MSc proposal "Fine-Tuning LLaMA for Academic Reasoning
Evaluation" (University of Leeds) that the project implements; every value it specifies is a
default in conf/base (its split, LoRA, GRPO settings, eq. (6), Tables 1 to 4 and Figure 1), and
the code's comments say which value each one is.
"""

__version__ = "0.1.0"
