"""The top-level API: a small ``rxdata.__all__``, and moved names that still work with a
DeprecationWarning naming their new place."""

from __future__ import annotations

import importlib
import warnings

import pytest

import rxdata


def test_top_level_is_small_and_has_one_error_class():
    names = set(rxdata.__all__) - {"__version__"}
    # 37: Records and open_records, the handle on a conversion, joined the 35 (issue 22)
    assert 25 <= len(names) <= 37, sorted(names)
    errors = importlib.import_module("rxdata.errors")
    error_names = {n for n in names if isinstance(getattr(rxdata, n), type)} & set(errors.__all__)
    assert error_names == {"RxDataError"}
    assert not names & set(rxdata._MOVED), "a name is both exported and deprecated"


@pytest.mark.parametrize("name", sorted(rxdata._MOVED))
def test_moved_name_warns_and_names_its_new_module(name):
    module = rxdata._MOVED[name]
    expected = getattr(importlib.import_module(f"rxdata.{module}"), name)
    with pytest.warns(DeprecationWarning, match=rf"rxdata\.{name} is deprecated.*rxdata\.{module}"):
        value = getattr(rxdata, name)
    assert value is expected
    with pytest.warns(DeprecationWarning):  # warns every time: never cached on the package
        getattr(rxdata, name)


def test_exported_names_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for name in ("read_metadata", "parse_id_code", "image_path", "load_site", "Split"):
            assert callable(getattr(rxdata, name))


def test_errors_stay_importable_from_rxdata_errors():
    from rxdata.errors import ImageNotFoundError, ParseError, RxDataError

    assert issubclass(ParseError, RxDataError) and issubclass(ImageNotFoundError, RxDataError)
    assert rxdata.errors.ParseError is ParseError  # submodules load on attribute access


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rxdata.nope  # noqa: B018


def test_pipeline_num_classes_dict_is_renamed():
    pipeline = pytest.importorskip("rxdata.pipeline")
    from rxdata.naming import NUM_CLASSES, NUM_TREATMENTS

    assert pipeline.LABEL_SPACES == {"treatments": NUM_TREATMENTS, "with_controls": NUM_CLASSES}
    with pytest.warns(DeprecationWarning, match=r"rxdata\.pipeline\.LABEL_SPACES"):
        assert pipeline.NUM_CLASSES is pipeline.LABEL_SPACES
    assert "NUM_CLASSES" not in pipeline.__all__


def test_tfrecord_channels_key_is_renamed():
    tfrecord = pytest.importorskip("rxdata.tfrecord")
    assert tfrecord.CHANNELS_KEY == "channels"
    with pytest.warns(DeprecationWarning, match=r"rxdata\.tfrecord\.CHANNELS_KEY"):
        assert tfrecord.CHANNELS == "channels"
    with pytest.raises(AttributeError):
        tfrecord.NOT_A_NAME  # noqa: B018
