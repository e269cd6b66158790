from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rxdata
from rxdata.errors import SplitError
from rxdata.splits import (
    WILDS_TEST_EXPERIMENTS,
    WILDS_TRAIN_EXPERIMENTS,
    WILDS_VAL_EXPERIMENTS,
    Split,
    SplitReport,
    experiment_folds,
    group_split,
    holdout_experiments,
    read_split,
    wilds_split,
    write_split,
)

# Kaggle training experiments per cell type.
REAL_COUNTS = {"HEPG2": 7, "HUVEC": 16, "RPE": 7, "U2OS": 3}


def make_meta(counts: dict[str, int], plates: int = 2, sites: int = 2) -> pd.DataFrame:
    """A small site table: every experiment has ``plates`` plates of one well, ``sites`` sites."""
    rows = []
    for cell, n in counts.items():
        for b in range(1, n + 1):
            exp = f"{cell}-{b:02d}"
            for plate in range(1, plates + 1):
                for site in range(1, sites + 1):
                    rows.append(
                        {
                            "id_code": f"{exp}_{plate}_B03",
                            "dataset": "train",
                            "experiment": exp,
                            "cell_type": cell,
                            "plate": plate,
                            "site": site,
                        }
                    )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def real_meta(real_metadata_dir: Path) -> pd.DataFrame:
    return rxdata.read_metadata(real_metadata_dir)


def experiments_of(split: Split, part: str) -> set[str]:
    return {k[0] for k in split.keys(part)}


# ----------------------------------------------------------------------------- Split value


def test_split_rejects_a_group_in_two_parts() -> None:
    with pytest.raises(SplitError, match=r"'A-01'.*two parts"):
        Split({"train": {"A-01", "A-02"}, "val": {"A-01"}})


@pytest.mark.parametrize(
    ("parts", "by", "match"),
    [
        ({"": {"A-01"}}, ("experiment",), "part names"),
        ({"train": {("A-01", "1")}}, ("experiment",), "one non-empty value"),
        ({"train": {""}}, ("experiment",), "one non-empty value"),
        ({"train": {"A-01"}}, (), "at least one column"),
    ],
    ids=["empty-part-name", "key-too-long", "empty-key", "no-by"],
)
def test_split_validates(parts: dict[str, set[object]], by: tuple[str, ...], match: str) -> None:
    with pytest.raises(SplitError, match=match):
        Split(parts, by=by)  # type: ignore[arg-type]


def test_split_is_immutable_and_hashable() -> None:
    split = Split({"train": {"A-01"}, "val": {"A-02"}})
    with pytest.raises(TypeError):
        split.parts["test"] = frozenset()  # type: ignore[index]
    assert hash(split) == hash(Split({"val": {"A-02"}, "train": {"A-01"}}))
    assert split == Split({"val": {"A-02"}, "train": {"A-01"}})


def test_assign_select_and_train_val() -> None:
    meta = make_meta({"HEPG2": 3})
    split = Split({"fold_0": {"HEPG2-01"}, "fold_1": {"HEPG2-02"}})
    parts = split.assign(meta)
    assert parts.index.equals(meta.index)
    assert parts[meta.experiment == "HEPG2-03"].isna().all()
    assert (parts[meta.experiment == "HEPG2-01"] == "fold_0").all()
    train, val = split.train_val(meta, "fold_0")
    assert set(train.experiment) == {"HEPG2-02"}
    assert set(val.experiment) == {"HEPG2-01"}
    with pytest.raises(SplitError, match="unknown part"):
        split.select(meta, "test")
    with pytest.raises(SplitError, match=r"not in the metadata.*HEPG2-09"):
        Split({"val": {"HEPG2-09"}}).assign(meta, strict=True)
    with pytest.raises(SplitError, match="needs metadata columns"):
        split.assign(meta.drop(columns="experiment"))


def test_assign_matches_integer_columns_as_strings() -> None:
    meta = make_meta({"RPE": 1}, plates=3)
    split = Split({"a": {("RPE-01", "1")}, "b": {("RPE-01", "3")}}, by=("experiment", "plate"))
    assert split.assign(meta).tolist() == ["a", "a", pd.NA, pd.NA, "b", "b"]


# ------------------------------------------------------------------------- hold-out


def test_holdout_one_per_cell_type_is_balanced_and_reproducible() -> None:
    meta = make_meta(REAL_COUNTS)
    split = holdout_experiments(meta, per_cell_type=1, seed=4)
    held = experiments_of(split, "val")
    assert sorted(e.split("-")[0] for e in held) == sorted(REAL_COUNTS)
    assert experiments_of(split, "train") | held == set(meta.experiment)
    assert split == holdout_experiments(meta, per_cell_type=1, seed=4)
    seeds = {frozenset(experiments_of(holdout_experiments(meta, seed=s), "val")) for s in range(8)}
    assert len(seeds) > 1, "different seeds should hold out different experiments"


def test_holdout_fraction_and_explicit() -> None:
    meta = make_meta({"HUVEC": 10, "U2OS": 3})
    split = holdout_experiments(meta, fraction=0.2, seed=0, names=("fit", "check"))
    held = experiments_of(split, "check")
    assert sum(e.startswith("HUVEC") for e in held) == 2
    assert sum(e.startswith("U2OS") for e in held) == 1  # round(0.6) = 1, at least one
    explicit = holdout_experiments(meta, experiments=["U2OS-02", "HUVEC-05"])
    assert experiments_of(explicit, "val") == {"U2OS-02", "HUVEC-05"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"experiments": ["HUVEC-99"]}, r"\['HUVEC-99'\] are not in the metadata"),
        ({"per_cell_type": 3}, r"cannot hold out 3 of the 3 U2OS"),
        ({"per_cell_type": 1, "fraction": 0.5}, "at most one"),
        ({"fraction": 1.5}, "fraction must be in"),
        ({"per_cell_type": 0}, "at least 1"),
    ],
    ids=["unknown-experiment", "none-left", "two-ways", "bad-fraction", "zero"],
)
def test_holdout_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(SplitError, match=match):
        holdout_experiments(make_meta({"HUVEC": 10, "U2OS": 3}), **kwargs)  # type: ignore[arg-type]


def test_holdout_uses_only_the_training_dataset() -> None:
    meta = make_meta({"HEPG2": 3})
    meta.loc[meta.experiment == "HEPG2-03", "dataset"] = "test"
    split = holdout_experiments(meta, seed=0)
    assert "HEPG2-03" not in experiments_of(split, "train") | experiments_of(split, "val")


# ------------------------------------------------------------------------- k folds


def test_six_folds_of_the_kaggle_counts() -> None:
    meta = make_meta(REAL_COUNTS)
    with pytest.warns(UserWarning, match="U2OS has only 3"):
        folds = experiment_folds(meta, 6, seed=0)
    sizes = sorted(len(folds.keys(f)) for f in folds.names)
    assert sizes == [5, 5, 5, 6, 6, 6]
    per_fold = [{e.split("-")[0] for e in experiments_of(folds, f)} for f in folds.names]
    assert all({"HEPG2", "HUVEC", "RPE"} <= cells for cells in per_fold)
    assert sum("U2OS" in cells for cells in per_fold) == 3
    report = folds.report(meta)
    assert report.experiment_disjoint
    assert sorted(report.missing_cell_types) == sorted(
        f for f, cells in zip(folds.names, per_fold, strict=True) if "U2OS" not in cells
    )
    assert "has no U2OS" in str(report)


def test_folds_with_every_cell_type_when_counts_allow() -> None:
    meta = make_meta(REAL_COUNTS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        folds = experiment_folds(meta, 3, seed=2)
    for fold in folds.names:
        cells = [e.split("-")[0] for e in experiments_of(folds, fold)]
        assert set(cells) == set(REAL_COUNTS)
        for cell, n in REAL_COUNTS.items():
            assert cells.count(cell) in (n // 3, n // 3 + 1)


def test_fold_errors() -> None:
    meta = make_meta({"HEPG2": 2, "U2OS": 1})
    with pytest.raises(SplitError, match="cannot make 4 folds of 3"):
        experiment_folds(meta, 4)
    with pytest.raises(SplitError, match="at least 2"):
        experiment_folds(meta, 1)
    with pytest.raises(SplitError, match="U2OS has only 1"):
        experiment_folds(meta, 2, on_missing="raise")
    folds = experiment_folds(meta, 2, on_missing="allow")
    assert len(folds.names) == 2


@settings(max_examples=40, deadline=None)
@given(
    counts=st.dictionaries(
        st.sampled_from(["HEPG2", "HUVEC", "RPE", "U2OS"]), st.integers(1, 9), min_size=1
    ),
    k=st.integers(2, 8),
    seed=st.integers(0, 2**32 - 1),
)
def test_folds_partition_the_experiments(counts: dict[str, int], k: int, seed: int) -> None:
    meta = make_meta(counts, plates=1, sites=1)
    total = sum(counts.values())
    if k > total:
        with pytest.raises(SplitError):
            experiment_folds(meta, k, seed=seed, on_missing="allow")
        return
    folds = experiment_folds(meta, k, seed=seed, on_missing="allow")
    members = [experiments_of(folds, f) for f in folds.names]
    assert len(members) == k
    assert set().union(*members) == set(meta.experiment)
    assert sum(len(m) for m in members) == total  # disjoint
    sizes = [len(m) for m in members]
    assert max(sizes) - min(sizes) <= 1
    for cell, n in counts.items():
        per_fold = [sum(e.startswith(cell + "-") for e in m) for m in members]
        assert max(per_fold) - min(per_fold) <= 1, (cell, n, per_fold)
    assert folds == experiment_folds(meta, k, seed=seed, on_missing="allow")


# ------------------------------------------------------------------------- groups


def test_group_split_by_physical_plate() -> None:
    meta = make_meta({"HEPG2": 5}, plates=4)
    split = group_split(meta, ["experiment", "plate"], seed=1)
    assert split.by == ("experiment", "plate")
    assert len(split.keys("train")) + len(split.keys("val")) == 20
    assert len(split.keys("val")) == 4  # 20% of 20 equal-size groups
    report = split.report(meta)
    assert report.unassigned_rows == 0
    assert not report.experiment_disjoint  # plates of one experiment in both parts


def test_group_split_into_k_parts_and_by_cell_type() -> None:
    meta = make_meta(REAL_COUNTS)
    split = group_split(meta, "cell_type", parts=2, seed=0)
    assert split.names == ("fold_0", "fold_1")
    assert sum(len(split.keys(p)) for p in split.names) == 4
    assert split.report(meta).experiment_disjoint


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"by": "nope"}, "needs metadata columns"),
        ({"by": "plate", "parts": {"a": 0.5, "b": 0.4}}, "sum to 1"),
        ({"by": "plate", "parts": {"a": 1.0, "b": 0.0}}, "positive"),
        ({"by": "plate", "parts": 3}, "cannot fill 3 parts"),
        ({"by": "plate", "parts": 1}, "at least 2"),
    ],
    ids=["missing-column", "bad-sum", "zero-fraction", "too-few-groups", "one-part"],
)
def test_group_split_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(SplitError, match=match):
        group_split(make_meta({"RPE": 2}, plates=2), **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- CSV


def test_write_read_round_trip(tmp_path: Path) -> None:
    meta = make_meta(REAL_COUNTS)
    folds = experiment_folds(meta, 3, seed=5)
    path = tmp_path / "folds.csv"
    write_split(folds, path)
    again = read_split(path)
    assert again == folds
    assert again.scheme == "folds" and again.seed == 5
    assert again.assign(meta).equals(folds.assign(meta))


def test_read_split_without_header_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("experiment,part\nA-01,train\nA-02,val\n")
    split = read_split(path)
    assert split.scheme == "custom" and split.seed is None
    assert split.part_of("A-02") == "val"
    path.write_text("experiment,part\nA-01,train\nA-02,val\nA-01,val\n")
    with pytest.raises(SplitError, match=r"lines 2, 4.*'A-01'.*more than once"):
        read_split(path)
    path.write_text("# rxdata split scheme=x seed=1\nexperiment,part\nA-01,train\nA-02,\n")
    with pytest.raises(SplitError, match=r"line 4: empty value"):
        read_split(path)
    path.write_text("experiment,fold\nA-01,1\n")
    with pytest.raises(SplitError, match="no 'part' column"):
        read_split(path)
    path.write_text("# rxdata split seed=abc\nexperiment,part\nA-01,train\n")
    with pytest.raises(SplitError, match="line 1: seed"):
        read_split(path)
    with pytest.raises(FileNotFoundError):
        read_split(tmp_path / "absent.csv")


_values = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=8
)


@settings(max_examples=50, deadline=None)
@given(
    data=st.dictionaries(
        st.tuples(_values, _values),
        st.sampled_from(["train", "val", "test", "fold 1", "#x"]),
        min_size=1,
        max_size=12,
    ),
    seed=st.one_of(st.none(), st.integers(-(2**40), 2**40)),
)
def test_split_csv_round_trip(
    tmp_path_factory: pytest.TempPathFactory, data: dict[tuple[str, str], str], seed: int | None
) -> None:
    parts: dict[str, set[tuple[str, str]]] = {}
    for key, part in data.items():
        parts.setdefault(part, set()).add(key)
    split = Split(parts, by=("experiment", "site"), scheme="custom", seed=seed)
    path = tmp_path_factory.mktemp("csv") / "split.csv"
    write_split(split, path)
    assert read_split(path) == split


# ------------------------------------------------------------------------- real metadata


@pytest.mark.real
def test_real_six_folds(real_meta: pd.DataFrame) -> None:
    with pytest.warns(UserWarning, match="U2OS has only 3"):
        folds = experiment_folds(real_meta, 6, seed=0)
    report = folds.report(real_meta)
    assert report.experiment_disjoint
    assert report.absent_groups == ()
    counts = report.counts
    all_rows = counts.xs("all", level="cell_type")
    assert all_rows["experiments"].sum() == 33
    assert all_rows["sites"].sum() == (real_meta.dataset == "train").sum()
    assert sorted(all_rows["experiments"]) == [5, 5, 5, 6, 6, 6]
    assert len(report.missing_cell_types) == 3
    assert all(cells == ("U2OS",) for cells in report.missing_cell_types.values())
    # test rows are in no fold
    assert report.unassigned_rows == (real_meta.dataset == "test").sum()


@pytest.mark.real
def test_real_holdout(real_meta: pd.DataFrame) -> None:
    split = holdout_experiments(real_meta, per_cell_type=1, seed=0)
    counts = split.counts(real_meta)
    assert counts.loc[("val", "all"), "experiments"] == 4
    assert counts.loc[("train", "all"), "experiments"] == 29
    assert (counts.xs("val", level="part").drop(index="all")["experiments"] == 1).all()


@pytest.mark.real
def test_real_wilds_split_matches_the_published_counts(real_meta: pd.DataFrame) -> None:
    split = wilds_split(real_meta)
    counts = split.counts(real_meta)
    # WILDS RxRx1 v1.0 split sizes (images = sites): train 40,612, val 9,854, test 34,432,
    # id_test 40,612; test per cell type HEPG2 7,388, HUVEC 17,244, RPE 7,360, U2OS 2,440.
    sites = counts.xs("all", level="cell_type")["sites"].to_dict()
    assert sites == {"train": 40612, "id_test": 40612, "val": 9854, "test": 34432}
    test = counts.xs("test", level="part")["sites"].to_dict()
    assert test == {"HEPG2": 7388, "HUVEC": 17244, "RPE": 7360, "U2OS": 2440, "all": 34432}
    # With the Kaggle CSVs only the controls of val/test are labeled.
    labeled = counts.xs("all", level="cell_type")["labeled_sites"].to_dict()
    assert labeled["train"] == 40612
    assert labeled["val"] < sites["val"] / 8
    report = split.report(real_meta)
    assert set(report.shared_experiments) == set(WILDS_TRAIN_EXPERIMENTS)
    assert report.unassigned_rows == 0


@pytest.mark.real
def test_real_wilds_mixed_to_test_matches_wilds_counts(real_meta: pd.DataFrame) -> None:
    """WILDS' mixed-to-test: 33 training experiments (19 + 14), site 1; test = site 2."""
    split = wilds_split(real_meta, scheme="mixed-to-test")
    counts = split.counts(real_meta).xs("all", level="cell_type")
    assert counts.loc["train", "experiments"] == 33
    assert counts.loc["test", "experiments"] == 14 and counts.loc["val", "experiments"] == 4
    test_sites = wilds_split(real_meta).counts(real_meta).loc[("test", "all"), "sites"]
    assert counts.loc["test", "sites"] == test_sites // 2  # one site of each test well
    assert split.report(real_meta).shared_experiments  # test experiments trained on (site 1)


def test_mixed_to_test_drops_one_training_experiment_per_test_experiment() -> None:
    meta = pd.DataFrame({"experiment": ["HUVEC-07", "HUVEC-08", "U2OS-01", "U2OS-02"]})
    split = wilds_split(meta.assign(site=1), on_missing="allow", scheme="mixed-to-test")
    train = {e for e, _ in split.parts["train"]}
    assert {"HUVEC-08", "U2OS-02"} <= train and not {"HUVEC-07", "U2OS-01"} & train
    assert len(train) == 33 and split.scheme == "wilds-mixed-to-test"
    with pytest.raises(SplitError, match="'official' or 'mixed-to-test'"):
        wilds_split(meta.assign(site=1), on_missing="allow", scheme="mixed")  # type: ignore[arg-type]


def test_wilds_lists_cover_the_51_experiments() -> None:
    every = WILDS_TRAIN_EXPERIMENTS + WILDS_VAL_EXPERIMENTS + WILDS_TEST_EXPERIMENTS
    assert len(every) == len(set(every)) == 51
    assert len(WILDS_TEST_EXPERIMENTS) == 14


def test_wilds_split_spelling_and_missing() -> None:
    meta = pd.DataFrame({"experiment": ["HUVEC-1", "HUVEC-1", "U2OS-4"], "site": [1, 2, 2]})
    with pytest.raises(SplitError, match="49 of its 51 experiments"):
        wilds_split(meta)
    split = wilds_split(meta, on_missing="allow")
    assert split.assign(meta).tolist() == ["train", "id_test", "val"]
    with pytest.warns(UserWarning, match="not in the metadata"):
        wilds_split(meta, on_missing="warn")


def test_public_names() -> None:
    assert rxdata.Split is Split
    assert rxdata.splits.SplitReport is SplitReport
    assert not hasattr(rxdata, "SplitReport")  # one home: rxdata.splits
    assert rxdata.experiment_folds is experiment_folds
    np.testing.assert_equal(len(rxdata.splits.__all__), 11)


@pytest.mark.real
def test_docs_tables_match_the_functions(real_meta: pd.DataFrame) -> None:
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    script = root / "tools" / "gen_split_tables.py"
    spec = importlib.util.spec_from_file_location("gen_split_tables", script)
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    page = (root / "docs" / "splits.md").read_text(encoding="utf-8")
    generated = gen.tables(real_meta)
    assert set(generated) == {"folds", "holdout", "wilds", "groups"}
    assert gen.render(page, generated) == page, "run: python tools/gen_split_tables.py --write"
