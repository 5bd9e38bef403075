import logging

import numpy as np
import pandas as pd
import pytest

from hle_reasoning.hle.data.sampling import (
    _allocate,
    category_test_sizes,
    cochran_n,
    cochran_sample_size,
    find_leaks,
    focus_problems,
    strata_labels,
    stratified_split,
    z_score,
)

# The proposal's Table 2: questions -> test size, with 90% confidence, 5% margin, p = 0.5.
PROPOSAL_TABLE_2 = {
    "Math": (1106, 218),
    "Biology/Medicine": (303, 143),
    "Chemistry": (170, 105),
    "Computer Science/AI": (258, 132),
    "Engineering": (130, 88),
    "Humanities/Social Science": (235, 126),
    "Other": (258, 132),
    "Physics": (240, 127),
}


@pytest.mark.parametrize(("category", "sizes"), PROPOSAL_TABLE_2.items())
def test_cochran_reproduces_the_proposals_table_2(category, sizes):
    population, test_size = sizes
    assert cochran_sample_size(population, 0.90, 0.05, 0.5) == test_size


TABLE_2_MIN_TEST_PCT = {
    303: 47.26,
    170: 61.56,
    258: 51.29,
    130: 67.72,
    235: 53.63,
    1106: 19.67,
    240: 53.10,
}


@pytest.mark.parametrize(("population", "pct"), TABLE_2_MIN_TEST_PCT.items())
def test_table_2_min_test_percent_uses_the_rounded_z(population, pct):
    # The proposal's unrounded shares come from z = 1.645; the exact quantile (1.6449) gives
    # shares up to 0.01 lower and the same rounded test sizes.
    assert round(100 * cochran_n(population, z=1.645) / population, 2) == pct
    exact = 100 * cochran_n(population) / population
    assert pct - 0.011 < exact < pct
    assert cochran_sample_size(population, z=1.645) == cochran_sample_size(population)


def test_z_scores():
    assert z_score(0.90) == pytest.approx(1.644854, abs=1e-6)
    assert z_score(0.95) == pytest.approx(1.959964, abs=1e-6)


def test_cochran_limits():
    assert cochran_sample_size(0) == 0
    assert cochran_sample_size(1) == 1
    # Small populations are tested whole; large ones approach n0 = 270.6.
    assert cochran_sample_size(10) == 10
    assert cochran_sample_size(10_000_000) == 271
    # A wider margin needs fewer questions.
    assert cochran_sample_size(1106, margin_of_error=0.10) < 218


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"confidence_level": 1.5}, "confidence_level"),
        ({"margin_of_error": 0.0}, "margin_of_error"),
        ({"proportion": 1.0}, "proportion"),
    ],
)
def test_cochran_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cochran_sample_size(100, **kwargs)


def test_split_sizes_follow_cochran_per_category(sample_questions):
    train, test, sizes = stratified_split(sample_questions, seed=1)
    for row in sizes.itertuples():
        assert row.test_size == cochran_sample_size(row.questions)
        assert (test["category"] == row.category).sum() == row.test_size
        assert (train["category"] == row.category).sum() == row.train_size
    assert len(train) + len(test) == len(sample_questions)


def test_split_is_disjoint_and_complete(sample_questions):
    train, test, _ = stratified_split(sample_questions, seed=3)
    assert set(train["id"]).isdisjoint(test["id"])
    assert set(train["id"]) | set(test["id"]) == set(sample_questions["id"])


def test_split_is_deterministic_for_a_seed_and_varies_across_seeds(sample_questions):
    a = stratified_split(sample_questions, seed=7)[1]["id"].tolist()
    b = stratified_split(sample_questions, seed=7)[1]["id"].tolist()
    c = stratified_split(sample_questions, seed=8)[1]["id"].tolist()
    assert a == b
    assert sorted(a) != sorted(c)


def test_split_does_not_depend_on_row_order(sample_questions):
    shuffled = sample_questions.sample(frac=1.0, random_state=0)
    a = set(stratified_split(sample_questions, seed=5)[1]["id"])
    b = set(stratified_split(shuffled, seed=5)[1]["id"])
    assert a == b


def test_split_is_stratified_by_answer_type_and_image(real_questions):
    # On real HLE questions each stratum's test share stays within one question of its
    # category's test share (largest-remainder allocation).
    train, test, sizes = stratified_split(real_questions, seed=42)
    strata = strata_labels(real_questions)
    is_test = real_questions["id"].isin(set(test["id"]))
    for row in sizes.itertuples():
        in_cat = real_questions["category"] == row.category
        share = row.test_size / row.questions
        for stratum in strata[in_cat].unique():
            members = in_cat & (strata == stratum)
            expected = members.sum() * share
            assert abs(is_test[members].sum() - expected) <= 1.0, (row.category, stratum)


def test_split_on_real_hle_counts(real_questions):
    _, test, sizes = stratified_split(real_questions)
    by_cat = sizes.set_index("category")
    # Math has 255 real questions in the anchor subset: n = 270.6 / (1 + 269.6 / 255) = 131.5.
    assert by_cat.loc["Math", "questions"] == 255
    assert by_cat.loc["Math", "test_size"] == round(cochran_n(255))
    assert len(test) == by_cat["test_size"].sum()


def test_find_leaks_needs_same_text_and_same_image():
    train = pd.DataFrame(
        {"id": ["a", "b"], "question": ["What is  2+2?", "Area?"], "image": ["", "img1"]}
    )
    test = pd.DataFrame(
        {"id": ["c", "d"], "question": ["what is 2+2?", "Area?"], "image": ["", "img2"]}
    )
    leaks = find_leaks(train, test)
    assert leaks[["train_id", "test_id"]].values.tolist() == [["a", "c"]]


def test_stratified_split_keeps_input_untouched(sample_questions):
    before = sample_questions.copy()
    stratified_split(sample_questions)
    pd.testing.assert_frame_equal(sample_questions, before)
    assert np.all(sample_questions.index == before.index)


def test_cochran_rounds_an_exact_half_up():
    # z = 2, e = 0.5, p = 0.5: n0 = 4 * 0.25 / 0.25 = 4; N = 5: n = 4 / (1 + 3 / 5) = 2.5 exactly.
    # "Rounded to the nearest integer" takes it to 3; Python's round() (to even) would give 2.
    assert cochran_n(5, margin_of_error=0.5, z=2.0) == 2.5
    assert cochran_sample_size(5, margin_of_error=0.5, z=2.0) == 3
    # Just below and above the half: N = 4 gives 16 / 7 = 2.29 -> 2, N = 6 gives 2.67 -> 3.
    assert cochran_sample_size(4, margin_of_error=0.5, z=2.0) == 2
    assert cochran_sample_size(6, margin_of_error=0.5, z=2.0) == 3


@pytest.mark.parametrize("level", [0.0, 1.0, -0.1])
def test_z_score_needs_a_level_strictly_inside_0_1(level):
    with pytest.raises(ValueError, match=r"strictly between 0 and 1 .*the proposal uses 0\.90\.$"):
        z_score(level)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"population": -1}, r"^population must be >= 0 \(got -1\)$"),
        ({"margin_of_error": 1.0}, r"^margin_of_error must lie in \(0, 1\)"),
        ({"margin_of_error": 1.5}, r"^margin_of_error must lie in \(0, 1\)"),
        ({"proportion": 0.0}, r"^proportion must lie in \(0, 1\)"),
        ({"z": 0.0}, r"^z must be positive \(got 0.0\); leave it null"),
    ],
)
def test_cochran_n_boundaries(kwargs, message):
    arguments = {"population": 100, **kwargs}
    with pytest.raises(ValueError, match=message):
        cochran_n(**arguments)


def test_cochran_n_by_hand():
    assert cochran_n(0) == 0.0
    # z = 0.5, e = 0.05, p = 0.5: n0 = 0.25 * 0.25 / 0.0025 = 25; N = 100: 25 / 1.24.
    assert cochran_n(100, z=0.5) == pytest.approx(25 / 1.24)


def test_strata_labels_are_answer_type_and_image_presence():
    frame = pd.DataFrame(
        {
            "answer_type": ["exactMatch", "multipleChoice", "exactMatch", "multipleChoice"],
            "image": ["data:image/png;base64,AAAA", "", "  ", "data:image/jpeg;base64,BBBB"],
        }
    )
    assert strata_labels(frame).tolist() == [
        "exactMatch|image",
        "multipleChoice|text",
        "exactMatch|text",
        "multipleChoice|image",
    ]


@pytest.mark.parametrize(
    ("sizes", "total", "expected"),
    [
        # quotas 0.3, 0.9, 1.8: floors 0, 0, 1; the two largest remainders (b, c) get one more.
        ({"a": 1, "b": 3, "c": 6}, 3, {"a": 0, "b": 1, "c": 2}),
        # quotas 0.5, 1.5, 3.0: one left over, a and b tie on 0.5: the larger stratum (b) wins.
        ({"a": 1, "b": 3, "c": 6}, 5, {"a": 0, "b": 2, "c": 3}),
        # equal remainders and equal sizes: the name decides.
        ({"y": 2, "x": 2}, 1, {"x": 1, "y": 0}),
    ],
)
def test_largest_remainder_allocation_by_hand(sizes, total, expected):
    allocation = _allocate(pd.Series(sizes), total)
    assert allocation.to_dict() == expected
    assert allocation.dtype.kind == "i"


def _hand_frame(n_image: int, n_text: int) -> pd.DataFrame:
    n = n_image + n_text
    return pd.DataFrame(
        {
            "id": [f"q{i:02d}" for i in range(n)],
            "question": [f"question {i}" for i in range(n)],
            "image": ["data:image/png;base64,AAAA"] * n_image + [""] * n_text,
            "answer_type": ["exactMatch"] * n,
            "category": ["Math"] * n,
        }
    )


def test_split_on_hand_data_sizes_table_and_log(caplog):
    # 10 questions, z = 1, e = 0.25, p = 0.5: n0 = 4, n = 4 / (1 + 3 / 10) = 3.08 -> 3 test;
    # strata of 4 image and 6 text questions: quotas 1.2 and 1.8 -> 1 and 2.
    frame = _hand_frame(4, 6)
    with caplog.at_level(logging.INFO, logger="hle_reasoning.hle.data.sampling"):
        train, test, sizes = stratified_split(frame, margin_of_error=0.25, z=1.0, seed=0)
    assert [r.getMessage() for r in caplog.records] == [
        "Split 10 questions into 7 train / 3 test over 1 categories"
    ]
    assert sizes.to_dict("records") == [
        {
            "category": "Math",
            "questions": 10,
            "cochran_n": pytest.approx(4 / 1.3),
            "test_size": 3,
            "train_size": 7,
            "test_pct": pytest.approx(30.0),
            "train_pct": pytest.approx(70.0),
            "min_test_pct": pytest.approx(400 / 13),
        }
    ]
    assert (test["image"] != "").sum() == 1 and (test["image"] == "").sum() == 2
    for part in (train, test):
        assert list(part.columns) == list(frame.columns)
        assert part.index.tolist() == list(range(len(part)))


def test_split_default_seed_is_42(sample_questions):
    default = stratified_split(sample_questions)[1]["id"].tolist()
    assert default == stratified_split(sample_questions, seed=42)[1]["id"].tolist()
    assert default != stratified_split(sample_questions, seed=43)[1]["id"].tolist()


def test_find_leaks_reports_the_normalised_text():
    train = pd.DataFrame({"id": ["a"], "question": ["What  IS\t2+2?"], "image": ["img"]})
    test = pd.DataFrame({"id": ["c"], "question": ["what is 2+2? "], "image": ["img"]})
    leaks = find_leaks(train, test)
    assert leaks.to_dict("records") == [{"train_id": "a", "test_id": "c", "text": "what is 2+2?"}]
    assert leaks.index.tolist() == [0]
    # Text and image are separate keys: "ab" with image "c" is not "a" with image "bc".
    glued_train = pd.DataFrame({"id": ["x"], "question": ["ab"], "image": ["c"]})
    glued_test = pd.DataFrame({"id": ["y"], "question": ["a"], "image": ["bc"]})
    assert find_leaks(glued_train, glued_test).empty


def test_split_is_stratified_on_the_bundled_sample(sample_questions):
    # The same property as on the real questions, without the real HLE data: each stratum's test share
    # stays within one question of its category's share (largest-remainder allocation).
    _, test, sizes = stratified_split(sample_questions, seed=42)
    strata = strata_labels(sample_questions)
    is_test = sample_questions["id"].isin(set(test["id"]))
    checked = 0
    for row in sizes.itertuples():
        in_cat = sample_questions["category"] == row.category
        share = row.test_size / row.questions
        for stratum in strata[in_cat].unique():
            members = in_cat & (strata == stratum)
            assert abs(is_test[members].sum() - members.sum() * share) <= 1.0, (
                row.category,
                stratum,
            )
            checked += 1
    assert checked >= 16  # every category has at least two strata


def test_focus_problems_name_a_split_too_small_to_train_or_evaluate(sample_questions):
    sizes = category_test_sizes(sample_questions)
    _, test, _ = stratified_split(sample_questions)
    assert sizes == test["category"].value_counts().to_dict()  # the sizes the split draws
    categories = sample_questions["category"]
    assert focus_problems(categories, ["Math"], sizes, min_train=2) == []
    # The sample's 16 Physics questions split 1 train / 15 test: not one step of 2 questions.
    (physics,) = focus_problems(categories, ["Physics"], sizes, min_train=2)
    assert "['Physics'] (16 question(s)) leaves 1 training question(s)" in physics
    assert "training.grpo.batch_size" in physics
    # Every Humanities question goes to the test side: nothing to train on.
    (humanities,) = focus_problems(categories, ["Humanities/Social Science"], sizes)
    assert "leaves 0 training question(s)" in humanities
    (missing,) = focus_problems(categories, ["Astrology"], sizes)
    assert "['Astrology'], which the data does not contain" in missing
    (untested,) = focus_problems(categories, ["Math"], {"Math": 0})
    assert "no test question" in untested
