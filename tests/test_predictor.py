import json

import numpy as np
import pytest
from helpers import predictor_from, trial_data

from automl import load
from automl.exceptions import IntegrityError, SchemaError
from automl.models import get_family
from automl.training import train_candidate


@pytest.fixture(scope="module")
def saved(binary_df, tmp_path_factory):
    data, pre, schema, prof = trial_data(binary_df, "label", recipes=("tree",))
    family = get_family("lightgbm")
    res = train_candidate(family, family.portfolio(data.task)[0], data)
    path = predictor_from(res, data, pre, schema, prof).save(tmp_path_factory.mktemp("pred") / "model")
    return path


def test_manifest_lists_members_weights_and_schema(saved):
    man = json.loads((saved / "predictor.json").read_text())
    assert man["members"][0]["weight"] == 1.0 and man["members"][0]["family"] == "lightgbm"
    assert [c["name"] for c in man["input_schema"]["columns"]] == ["x1", "x2", "color", "x3"]
    assert man["classes"] == ["no", "yes"]
    sums = json.loads((saved / "checksums.json").read_text())["files"]
    assert "predictor.json" in sums and any(k.endswith("model.txt") for k in sums)


def test_predictions_keep_input_order_and_index(saved, binary_df):
    pred = load(saved)
    df = binary_df.drop(columns=["label"]).iloc[::-1]
    out = pred.predict(df)
    assert list(out.index) == list(df.index)
    proba = pred.predict_proba(df)
    assert list(proba.columns) == ["no", "yes"]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (out == np.where(proba["yes"] >= 0.5, "yes", "no")).all()


def test_one_changed_byte_is_refused(saved, tmp_path):
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(saved, copy)
    model_file = next(copy.rglob("model.txt"))
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    model_file.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"do not match checksums.json.*model.txt.*refusing to load"):
        load(copy)


def test_added_model_file_and_missing_checksums_are_refused(saved, tmp_path):
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(saved, copy)
    (next(copy.rglob("model.txt")).parent / "evil.pkl").write_bytes(b"x")
    with pytest.raises(IntegrityError, match="unexpected"):
        load(copy)
    (next(copy.rglob("evil.pkl"))).unlink()
    (copy / "checksums.json").unlink()
    with pytest.raises(IntegrityError, match="no checksums.json"):
        load(copy)


def test_schema_errors_name_the_field(saved, binary_df):
    pred = load(saved)
    with pytest.raises(SchemaError, match=r"'x1' \(required column is missing\)"):
        pred.predict(binary_df.drop(columns=["label", "x1"]))
    bad = binary_df.drop(columns=["label"]).head(3).astype({"x3": object})
    bad.loc[bad.index[0], "x3"] = "not a number"
    with pytest.raises(SchemaError, match=r"'x3' \(expected a number, got 'not a number'"):
        pred.predict(bad)
    # x2 had missing values in training, so it may be left out; unknown categories are accepted
    ok = binary_df.drop(columns=["label", "x2"]).head(3).assign(color="purple", extra=1)
    raw, report = pred.predict_raw(ok)
    assert raw.shape == (3, 2)
    assert report.ignored_columns == ["extra"] and report.filled_missing_columns == ["x2"]
    assert report.unknown_categories == {"color": ["purple"]}


def test_integer_classes_come_back_as_integers(multiclass_df, tmp_path):
    """Wine quality (3..9) and cover type (1..7) have integer labels: predictions must compare
    equal to them and be scorable by sklearn, not an object array sklearn calls 'unknown'."""
    from sklearn.metrics import accuracy_score

    df = multiclass_df.assign(label=multiclass_df["label"].astype("category").cat.codes.astype(int) + 3)
    data, pre, schema, prof = trial_data(df, "label", recipes=("tree",))
    family = get_family("lightgbm")
    res = train_candidate(family, family.portfolio(data.task)[0], data)
    pred = load(predictor_from(res, data, pre, schema, prof).save(tmp_path / "model"))
    out = pred.predict(df.drop(columns=["label"]))
    assert out.dtype.kind == "i" and set(out) <= set(df["label"])
    assert accuracy_score(df["label"], out.to_numpy()) > 0.5


def test_library_versions_are_recorded_and_a_difference_is_named_on_load(saved, monkeypatch, caplog):
    import lightgbm

    from automl import versions

    man = json.loads((saved / "predictor.json").read_text())
    assert man["versions"]["lightgbm"] == lightgbm.__version__ and man["versions"]["python"]
    assert load(saved).versions == man["versions"]
    here = {**man["versions"], "lightgbm": "0.0.1"}
    monkeypatch.setattr(versions, "package_versions", lambda extra=(): here)
    with caplog.at_level("WARNING", logger="automl.versions"):
        load(saved)
    assert f"lightgbm {lightgbm.__version__} -> 0.0.1" in caplog.text


def test_every_predictor_file_name_comes_from_the_layout(saved):
    """The artifact's files are named in automl.layout only: what is on disk is what it lists."""
    from automl import layout

    listed = {p.relative_to(saved).as_posix() for p in layout.predictor_files(saved)}
    on_disk = {p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file()}
    assert on_disk - listed == {layout.CHECKSUMS}
    sums = json.loads((saved / layout.CHECKSUMS).read_text())["files"]
    assert set(sums) == listed
