from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import log_softmax, softmax

import rxdata
from rxdata.errors import SubmissionError
from rxdata.labels import from_rerelease_names, to_rerelease_names
from rxdata.naming import NUM_CLASSES, NUM_TREATMENTS
from rxdata.submission import average_sites, read_test_wells, write_submission

IDS = ["HEPG2-08_1_B03", "HEPG2-08_1_B04", "HEPG2-08_2_C05"]


def site_rows(rng: np.random.Generator, n_classes: int = 5) -> tuple[np.ndarray, list[str]]:
    """Two sites per well of IDS, in a shuffled order."""
    ids = [i for i in IDS for _ in range(2)]
    logits = rng.normal(size=(len(ids), n_classes))
    order = rng.permutation(len(ids))
    return logits[order], [ids[i] for i in order]


# ----------------------------------------------------------------------------- averaging


def test_average_probs_by_id_code_not_position() -> None:
    rng = np.random.default_rng(0)
    logits, ids = site_rows(rng)
    probs = softmax(logits, axis=1)
    wells = average_sites(probs, id_codes=ids, sites=2)
    assert wells.index.name == "id_code"
    assert sorted(wells.index) == sorted(IDS)
    for well in IDS:
        rows = [i for i, x in enumerate(ids) if x == well]
        np.testing.assert_allclose(wells.loc[well].to_numpy(), probs[rows].mean(axis=0))
    np.testing.assert_allclose(wells.sum(axis=1), 1.0)


def test_average_logits_and_output_space() -> None:
    rng = np.random.default_rng(1)
    logits, ids = site_rows(rng)
    mean_logits = average_sites(logits, id_codes=ids, kind="logits")
    rows = [i for i, x in enumerate(ids) if x == IDS[0]]
    np.testing.assert_allclose(mean_logits.loc[IDS[0]].to_numpy(), logits[rows].mean(axis=0))
    as_probs = average_sites(logits, id_codes=ids, kind="logits", output="probs")
    np.testing.assert_allclose(as_probs.to_numpy(), softmax(mean_logits.to_numpy(), axis=1))
    # the two choices differ in general: geometric vs arithmetic mean of probabilities
    arith = average_sites(softmax(logits, axis=1), id_codes=ids)
    assert not np.allclose(arith.loc[as_probs.index].to_numpy(), as_probs.to_numpy())
    back = average_sites(softmax(logits, axis=1), id_codes=ids, output="logits")
    np.testing.assert_allclose(np.exp(back.to_numpy()), arith.to_numpy())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"predictions": np.ones((3, 2)), "id_codes": IDS[:2]}, "2 id_codes for 3 rows"),
        ({"predictions": np.ones(3), "id_codes": IDS}, "must be 2-D"),
        ({"predictions": np.ones((3, 2)), "id_codes": IDS, "sites": 2}, "HEPG2-08_1_B03 \\(1\\)"),
        ({"predictions": -np.ones((3, 2)), "id_codes": IDS}, "negative probabilities"),
        (
            {"predictions": np.array([[1.0], [np.nan], [1.0]]), "id_codes": IDS},
            "NaN/inf for id_codes 'HEPG2-08_1_B04'",
        ),
        ({"predictions": np.ones((3, 2)), "id_codes": IDS, "kind": "x"}, "kind must be"),
        ({"predictions": np.ones((3, 2)), "id_codes": [IDS[0], None, IDS[1]]}, "missing value"),
    ],
    ids=["length", "1d", "site-count", "negative", "nan", "kind", "missing-id"],
)
def test_average_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(SubmissionError, match=match):
        average_sites(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(
    n_wells=st.integers(1, 6),
    n_classes=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["probs", "logits"]),
)
def test_averaging_ignores_row_order(n_wells: int, n_classes: int, seed: int, kind: str) -> None:
    rng = np.random.default_rng(seed)
    ids = [f"U2OS-04_{1 + w % 4}_B{w + 2:02d}" for w in range(n_wells) for _ in range(2)]
    values = rng.normal(size=(len(ids), n_classes))
    if kind == "probs":
        values = softmax(values, axis=1)
    order = rng.permutation(len(ids))
    a = average_sites(values, id_codes=ids, kind=kind)  # type: ignore[arg-type]
    b = average_sites(values[order], id_codes=[ids[i] for i in order], kind=kind)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(a, b.loc[a.index], check_exact=False, rtol=1e-12)


# ----------------------------------------------------------------------------- submission


def test_write_submission_int_and_sirna_n(tmp_path: Path) -> None:
    test = pd.DataFrame({"id_code": IDS, "experiment": "HEPG2-08"})
    preds = pd.Series({IDS[2]: 5, IDS[0]: 0, IDS[1]: 1107})
    out = tmp_path / "sub.csv"
    written = write_submission(out, preds, test)
    assert out.read_text() == f"id_code,sirna\n{IDS[0]},0\n{IDS[1]},1107\n{IDS[2]},5\n"
    assert written.id_code.tolist() == IDS
    write_submission(out, preds, test, labels="sirna_N")
    # the re-release renumbered the labels: class 0 is sirna_332, never sirna_0
    assert pd.read_csv(out).sirna.tolist() == ["sirna_332", "sirna_141", "sirna_1016"]


def test_write_submission_from_scores_mapping_and_strings(tmp_path: Path) -> None:
    test = pd.DataFrame({"id_code": IDS})
    for n_classes in (NUM_TREATMENTS, NUM_CLASSES):
        scores = pd.DataFrame(np.eye(n_classes)[[2, 0, 1]], index=IDS)
        frame = write_submission(tmp_path / "a.csv", scores, test)
        assert frame.sirna.tolist() == [2, 0, 1]
    mapping = {IDS[0]: np.int16(3), IDS[1]: 4.0, IDS[2]: "sirna_332"}  # a re-release name
    assert write_submission(tmp_path / "b.csv", mapping, test).sirna.tolist() == [3, 4, 0]
    pairs = pd.DataFrame({"id_code": IDS[::-1], "sirna": [9, 8, 7]})
    assert write_submission(tmp_path / "c.csv", pairs, test).sirna.tolist() == [7, 8, 9]


@pytest.mark.parametrize(
    ("preds", "kwargs", "match"),
    [
        ({IDS[0]: 1, IDS[1]: 2}, {}, r"1 test well\(s\) have no prediction: 'HEPG2-08_2_C05'"),
        ({**dict.fromkeys(IDS, 1), "HEPG2-08_1_B02": 1138}, {}, "not test wells.*B02"),
        ({IDS[0]: 1, IDS[1]: 1108, IDS[2]: -1}, {}, "HEPG2-08_1_B04=1108.*HEPG2-08_2_C05=-1"),
        ({IDS[0]: 1, IDS[1]: 2.5, IDS[2]: "x"}, {}, "integer class ids"),
        (dict.fromkeys(IDS, 1), {"labels": "names"}, "labels must be"),
    ],
    ids=["missing", "extra", "out-of-range", "not-int", "bad-style"],
)
def test_write_submission_refuses(
    tmp_path: Path, preds: dict[str, object], kwargs: dict[str, object], match: str
) -> None:
    out = tmp_path / "sub.csv"
    with pytest.raises(SubmissionError, match=match):
        write_submission(out, preds, pd.DataFrame({"id_code": IDS}), **kwargs)  # type: ignore[arg-type]
    assert not out.exists()  # nothing half-written


def test_duplicates_and_extra_ignore(tmp_path: Path) -> None:
    test = pd.DataFrame({"id_code": IDS})
    dup = pd.Series([1, 2, 3, 4], index=[*IDS, IDS[1]])
    with pytest.raises(SubmissionError, match="more than once: 'HEPG2-08_1_B04'"):
        write_submission(tmp_path / "s.csv", dup, test)
    with pytest.raises(SubmissionError, match="listed twice"):
        twice = pd.DataFrame({"id_code": IDS * 2})
        write_submission(tmp_path / "s.csv", dict.fromkeys(IDS, 1), twice)
    extra = {**dict.fromkeys(IDS, 1), "HEPG2-08_1_B02": 1138}
    frame = write_submission(tmp_path / "s.csv", extra, test, extra="ignore")
    assert frame.id_code.tolist() == IDS


@pytest.mark.real
def test_round_trip_against_the_real_sample_submission(
    real_metadata_dir: Path, tmp_path: Path
) -> None:
    sample = pd.read_csv(real_metadata_dir / "sample_submission.csv")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 1108, size=len(sample))
    preds = pd.Series(labels, index=sample.id_code).sample(frac=1.0, random_state=1)
    out = tmp_path / "submission.csv"
    write_submission(out, preds, real_metadata_dir / "test.csv")
    back = pd.read_csv(out)
    assert back.columns.tolist() == sample.columns.tolist()
    assert back.id_code.tolist() == sample.id_code.tolist()  # test.csv order
    np.testing.assert_array_equal(back.sirna.to_numpy(), labels)
    # the site table gives the same wells in the same order
    meta = rxdata.read_metadata(real_metadata_dir)
    assert read_test_wells(meta).tolist() == sample.id_code.tolist()


@pytest.mark.real
def test_site_predictions_to_submission_on_the_real_test_wells(
    real_metadata_dir: Path, tmp_path: Path
) -> None:
    meta = rxdata.read_metadata(real_metadata_dir)
    test = meta[(meta.dataset == "test") & (meta.well_type == "treatment")]
    test = test.sample(frac=1.0, random_state=0)  # predictions arrive in any order
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(test), 64)).astype(np.float32)  # few classes: fast
    wells = average_sites(logits, id_codes=test.id_code.to_numpy(), kind="logits", sites=2)
    assert len(wells) == 19897
    # a score table has one column per treatment: pad the 64 with scores that never win
    padded = np.full((len(wells), NUM_TREATMENTS), -1e9, dtype=np.float32)
    padded[:, :64] = wells.to_numpy()
    scores = pd.DataFrame(padded, index=wells.index)
    frame = write_submission(tmp_path / "s.csv", scores, real_metadata_dir / "test.csv")
    expected = log_softmax(wells.to_numpy(), axis=1).argmax(axis=1)
    got = frame.set_index("id_code").sirna.loc[wells.index].to_numpy()
    np.testing.assert_array_equal(got, expected)


def test_public_names() -> None:
    assert rxdata.average_sites is average_sites
    assert rxdata.write_submission is write_submission


def test_auto_label_style_follows_the_metadata(tmp_path: Path) -> None:
    wells = [f"HEPG2-08_1_B{c:02d}" for c in (2, 3)]
    site_table = pd.DataFrame(
        {
            "id_code": [w for w in wells for _ in range(2)],
            "site": [1, 2, 1, 2],
            "dataset": "test",
            "well_type": ["negative_control"] * 2 + ["treatment"] * 2,
            "sirna": pd.array(["UNTREATED", "UNTREATED", None, None], dtype="string"),
        }
    )
    preds = {wells[1]: 17}
    name = to_rerelease_names([17])[0]
    frame = write_submission(tmp_path / "a.csv", preds, site_table)
    assert frame.to_dict("list") == {"id_code": [wells[1]], "sirna": [name]}
    integer_table = site_table.assign(sirna=pd.array(["1138"] * 2 + [None] * 2, dtype="string"))
    assert write_submission(tmp_path / "b.csv", preds, integer_table).sirna.tolist() == [17]
    assert write_submission(
        tmp_path / "c.csv", preds, integer_table, labels="sirna_N"
    ).sirna.tolist() == [name]
    # names that only look like the re-release's ("sirna_5000") are not auto-detected
    odd_table = site_table.assign(sirna=pd.array(["sirna_5000"] * 2 + [None] * 2, dtype="string"))
    assert write_submission(tmp_path / "d.csv", preds, odd_table).sirna.tolist() == [17]


@settings(max_examples=40, deadline=None)
@given(
    labels=st.lists(st.integers(0, 1107), min_size=1, max_size=30),
    seed=st.integers(0, 2**32 - 1),
    style=st.sampled_from(["int", "sirna_N"]),
)
def test_submission_csv_round_trip(
    tmp_path_factory: pytest.TempPathFactory, labels: list[int], seed: int, style: str
) -> None:
    ids = [f"RPE-{9 + i % 3:02d}_{1 + i % 4}_C{2 + i // 12:02d}" for i in range(len(labels))]
    ids = list(dict.fromkeys(ids))  # unique, in test order
    labels = labels[: len(ids)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    preds = pd.Series([labels[i] for i in order], index=[ids[i] for i in order])
    path = tmp_path_factory.mktemp("sub") / "s.csv"
    write_submission(path, preds, pd.DataFrame({"id_code": ids}), labels=style)  # type: ignore[arg-type]
    back = pd.read_csv(path, dtype=str)
    assert back.id_code.tolist() == ids
    if style == "sirna_N":  # names -> ids gives back the predicted ids
        assert from_rerelease_names(back.sirna.tolist()).tolist() == labels
        assert back.sirna.tolist() == to_rerelease_names(labels).tolist()
    else:
        assert back.sirna.tolist() == [str(v) for v in labels]


@pytest.mark.parametrize("n_classes", [NUM_TREATMENTS, NUM_CLASSES])
@pytest.mark.parametrize(
    ("where", "value"),
    [("row", np.nan), ("column", np.nan), ("cell", np.inf), ("cell", -np.inf)],
)
def test_non_finite_scores_are_refused(
    tmp_path: Path, n_classes: int, where: str, value: float
) -> None:
    scores = np.zeros((len(IDS), n_classes))
    scores[:, 5] = 1.0
    if where == "row":  # argmax of a NaN row would be class 0
        scores[1, :] = value
    elif where == "column":  # a NaN column would win every argmax
        scores[:, 7] = value
    else:
        scores[2, 9] = value
    named = {"row": IDS[1], "column": IDS[0], "cell": IDS[2]}[where]
    out = tmp_path / "s.csv"
    with pytest.raises(SubmissionError, match=rf"NaN or inf for .*'{named}'"):
        write_submission(out, pd.DataFrame(scores, index=IDS), pd.DataFrame({"id_code": IDS}))
    assert not out.exists()


@pytest.mark.parametrize("n_classes", [1, 3, 1107, 1109, 1138, 1140])
def test_score_tables_need_1108_or_1139_columns(tmp_path: Path, n_classes: int) -> None:
    scores = pd.DataFrame(np.zeros((len(IDS), n_classes)), index=IDS)
    with pytest.raises(SubmissionError, match=rf"got {n_classes} columns"):
        write_submission(tmp_path / "s.csv", scores, pd.DataFrame({"id_code": IDS}))


def test_score_tables_must_be_numeric(tmp_path: Path) -> None:
    scores = pd.DataFrame(np.zeros((len(IDS), NUM_TREATMENTS)), index=IDS).astype(object)
    scores.iloc[0, 3] = "high"
    with pytest.raises(SubmissionError, match="score columns must be numbers"):
        write_submission(tmp_path / "s.csv", scores, pd.DataFrame({"id_code": IDS}))


@pytest.mark.parametrize("label", ["sirna_5000", "sirna_x", "UNTREATED"])
def test_string_labels_are_re_release_names(tmp_path: Path, label: str) -> None:
    preds = {IDS[0]: 1, IDS[1]: 2, IDS[2]: label}
    # an unknown name is refused; UNTREATED (class 1138) is not a treatment
    match = "outside the treatment classes" if label == "UNTREATED" else "re-release names"
    with pytest.raises(SubmissionError, match=match):
        write_submission(tmp_path / "s.csv", preds, pd.DataFrame({"id_code": IDS}))
