"""Variation tables: CM tag parsing, selections, the Param specs and the CLI derived from one table."""

from __future__ import annotations

import argparse
import json

import jsonschema
import pytest

from imagenet_ops.aux.variations import (
    AUX_TABLE,
    BERKELEYVISION_MD5,
    BERKELEYVISION_URL,
    DROPBOX_MD5,
    DROPBOX_URL,
    GO_URL,
    AuxConfig,
    resolve_aux_config,
)
from imagenet_ops.core.errors import ConfigError
from imagenet_ops.core.variations import Choice, Combo, Group, Option, VariationTable, split_tags

MD5 = "0123456789abcdef0123456789abcdef"
MIRROR = "http://mirror.internal/ml/caffe_ilsvrc12.tar.gz"

# A two-group table with a combination and a valued tag, smaller than any real one.
TINY = VariationTable(
    artifact="tiny",
    groups=(
        Group("model", "Model", "Which model.", (Choice("a", "A", {"x": 1}), Choice("b", "B", {"x": 2}, aliases=("bee",))), "a"),
        Group(
            "prec",
            "Precision",
            "Number format.",
            (Choice("fp32", "FP32", {"y": "f"}), Choice("int8", "INT8", {"y": "i"})),
            "fp32",
            tag_prefix="prec.",
        ),
    ),
    options=(
        Option(
            "batch_size",
            "integer",
            "Batch size",
            "Images per batch.",
            default=1,
            optional=False,
            tag_prefix="batch_size.",
            minimum=1,
            maximum=64,
        ),
        Option("fast", "boolean", "Fast", "Go fast.", default=False, optional=False, tag="fast"),
    ),
    combos=(Combo({"model": "b", "prec": "int8"}, {"y": "b-int8"}),),
)


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ("_from.dropbox,_2012", ["from.dropbox", "2012"]),
        ("_from.go _skip_ssl_verification", ["from.go", "skip_ssl_verification"]),
        ("tags=_from.go,,_2012", ["from.go", "2012"]),
        (["_a", "b", " _c "], ["a", "b", "c"]),
        ("", []),
        (None, []),
    ],
)
def test_split_tags(tags, expected: list[str]) -> None:
    assert split_tags(tags) == expected


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ("_from.dropbox,_2012", {"source": "dropbox", "version": "2012"}),
        (["_from.go"], {"source": "go"}),
        ("_skip_ssl_verification", {"skip_ssl_verification": True}),
        ("_from.go,_from.go", {"source": "go"}),  # the same tag twice is not a conflict
    ],
)
def test_parse_tags(tags, expected: dict) -> None:
    assert AUX_TABLE.parse_tags(tags) == expected


def test_unknown_tag_lists_the_known_ones() -> None:
    known = "_from.berkeleyvision, _from.dropbox, _from.go, _2012, _skip_ssl_verification"

    with pytest.raises(ConfigError, match=f"unknown variation tag _from.nowhere for imagenet_aux; known tags: {known}$"):
        AUX_TABLE.parse_tags("_from.dropbox,_from.nowhere")


def test_two_tags_of_one_group_conflict() -> None:
    with pytest.raises(
        ConfigError, match=r"conflicting variations _from.dropbox and _from.go: both set source \('dropbox' vs 'go'\)"
    ):
        AUX_TABLE.parse_tags("_from.dropbox,_from.go")


def test_tag_conflicting_with_a_changed_field_is_an_error() -> None:
    with pytest.raises(ConfigError, match="variation tag sets source='dropbox' but source='go' was given; drop one of them"):
        AUX_TABLE.selections({"source": "go"}, "_from.dropbox")


@pytest.mark.parametrize("given", [{}, {"source": "berkeleyvision"}, {"source": "dropbox"}], ids=["absent", "default", "same"])
def test_tag_overrides_a_field_left_at_its_default(given: dict) -> None:
    assert AUX_TABLE.selections(given, "_from.dropbox")["source"] == "dropbox"


def test_selections_defaults() -> None:
    assert AUX_TABLE.selections() == {
        "source": "berkeleyvision",
        "version": "2012",
        "url": None,
        "md5": None,
        "sha256": None,
        "skip_ssl_verification": False,
    }


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"colour": "red"}, "imagenet_aux: unknown option\\(s\\) colour; known: source, version, url"),
        ({"source": "nowhere"}, "source: unknown variation 'nowhere'; choose one of berkeleyvision, dropbox, go"),
        ({"skip_ssl_verification": "maybe"}, "skip_ssl_verification must be a boolean, got 'maybe'"),
    ],
)
def test_selections_refuse_bad_input(given: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AUX_TABLE.selections(given)


def test_selections_from_form_ignores_other_params_and_reads_the_tags_field() -> None:
    form = {"source": "berkeleyvision", "variations": "_from.go,_skip_ssl_verification", "unrelated_param": 3}

    sel = AUX_TABLE.selections_from_form(form)

    assert (sel["source"], sel["skip_ssl_verification"]) == ("go", True)


def test_param_specs_describe_every_field() -> None:
    specs = AUX_TABLE.param_specs()

    assert list(specs) == [*AUX_TABLE.field_names(), "variations"]
    for name, spec in specs.items():
        assert {"type", "title", "description", "section", "default"} <= set(spec), name
        assert spec["title"] and spec["description"] and spec["section"], name
        json.dumps(spec)  # plain data, fit for an airflow Param
        # The default validates against the spec's own JSON schema (what the trigger form checks).
        jsonschema.validate(spec["default"], {k: v for k, v in spec.items() if k in ("type", "enum", "pattern")})
    assert specs["source"]["enum"] == ["berkeleyvision", "dropbox", "go"]
    assert specs["source"]["values_display"]["go"] == "armi.in (MLCommons automation default)"
    assert "_from.dropbox" in specs["source"]["description"]
    assert specs["version"]["enum"] == ["2012"]
    assert specs["url"]["type"] == ["string", "null"]
    assert specs["skip_ssl_verification"]["type"] == "boolean"
    assert "CM tag: _skip_ssl_verification." in specs["skip_ssl_verification"]["description"]


@pytest.mark.parametrize(
    ("field", "value", "valid"),
    [
        ("md5", MD5, True),
        ("md5", "xyz", False),
        ("url", MIRROR, True),
        ("url", "ftp://host/a.tar.gz", False),
        ("source", "go", True),
        ("source", "nowhere", False),
    ],
)
def test_param_spec_patterns(field: str, value: str, valid: bool) -> None:
    spec = AUX_TABLE.param_specs()[field]
    schema = {k: v for k, v in spec.items() if k in ("type", "enum", "pattern")}

    if valid:
        jsonschema.validate(value, schema)
    else:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(value, schema)


def aux_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="test")
    AUX_TABLE.add_cli_arguments(parser)
    return parser


def test_cli_arguments_are_derived_from_the_table() -> None:
    args = aux_parser().parse_args(
        ["--source", "dropbox", "--url", MIRROR, "--md5", MD5, "--skip-ssl-verification", "--variations", "_2012"]
    )

    assert AUX_TABLE.selections_from_args(args) == {
        "source": "dropbox",
        "version": "2012",
        "url": MIRROR,
        "md5": MD5,
        "sha256": None,
        "skip_ssl_verification": True,
    }


def test_cli_without_arguments_gives_the_defaults() -> None:
    assert AUX_TABLE.selections_from_args(aux_parser().parse_args([])) == AUX_TABLE.selections()


def test_cli_refuses_an_unknown_choice(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        aux_parser().parse_args(["--source", "nowhere"])

    assert "invalid choice: 'nowhere'" in capsys.readouterr().err


def test_cli_tags_conflicting_with_an_option() -> None:
    args = aux_parser().parse_args(["--source", "go", "--variations", "_from.dropbox"])

    with pytest.raises(ConfigError, match="drop one of them"):
        AUX_TABLE.selections_from_args(args)


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ("", {"x": 1, "y": "f"}),
        ("_bee", {"x": 2, "y": "f"}),
        ("_prec.int8", {"x": 1, "y": "i"}),
        ("_b,_prec.int8", {"x": 2, "y": "b-int8"}),  # the combination wins
    ],
)
def test_resolve_applies_combinations(tags: str, expected: dict) -> None:
    assert TINY.resolve(TINY.selections(None, tags)) == expected


@pytest.mark.parametrize(
    ("tags", "expected"),
    [("_batch_size.8", {"batch_size": 8}), ("_fast,_b", {"fast": True, "model": "b"}), ("_bee", {"model": "b"})],
)
def test_valued_and_flag_tags(tags: str, expected: dict) -> None:
    assert TINY.parse_tags(tags) == expected


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ("_batch_size.0", r"tag _batch_size.0: batch_size=0 is below the minimum 1"),
        ("_batch_size.65", r"batch_size=65 is above the maximum 64"),
        ("_batch_size.many", r"batch_size must be integer, got 'many'"),
        ("_prec.fp16", r"known tags: _a, _b, _bee, _prec.fp32, _prec.int8, _fast, _batch_size.<integer>"),
    ],
)
def test_tiny_table_refuses(tags: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TINY.parse_tags(tags)


def test_tiny_table_param_specs_carry_bounds() -> None:
    spec = TINY.param_specs()["batch_size"]

    assert (spec["type"], spec["minimum"], spec["maximum"], spec["default"]) == ("integer", 1, 64, 1)


@pytest.mark.parametrize(
    ("source", "urls", "md5"),
    [
        ("berkeleyvision", (BERKELEYVISION_URL, DROPBOX_URL), (BERKELEYVISION_MD5, DROPBOX_MD5)),
        ("dropbox", (DROPBOX_URL, BERKELEYVISION_URL), (DROPBOX_MD5, BERKELEYVISION_MD5)),
        ("go", (GO_URL, DROPBOX_URL), (DROPBOX_MD5, BERKELEYVISION_MD5)),
    ],
)
def test_resolve_aux_config_sources(source: str, urls: tuple, md5: tuple) -> None:
    config = resolve_aux_config(variations=f"_from.{source}")

    assert (config.source, config.version, config.urls, config.md5) == (source, "2012", urls, md5)
    assert (config.sha256, config.verify_ssl, config.filename) == ((), True, "caffe_ilsvrc12.tar.gz")


def test_custom_url_keeps_the_source_md5s() -> None:
    config = resolve_aux_config({"url": MIRROR})

    assert config.urls == (MIRROR,)
    assert config.md5 == (BERKELEYVISION_MD5, DROPBOX_MD5)
    assert config.filename == "caffe_ilsvrc12.tar.gz"


def test_custom_md5_replaces_the_source_md5s() -> None:
    config = resolve_aux_config({"url": MIRROR, "md5": MD5.upper()}, variations="_from.dropbox")

    assert (config.urls, config.md5) == ((MIRROR,), (MD5.upper(),))
    assert config.accepted.md5 == (MD5,)


def test_custom_sha256_is_checked() -> None:
    config = resolve_aux_config({"url": MIRROR, "sha256": "a" * 64})

    assert (config.md5, config.sha256) == ((), ("a" * 64,))
    assert config.accepted.sha256 == ("a" * 64,)


def test_custom_url_must_name_a_tar_archive() -> None:
    with pytest.raises(ConfigError, match="custom URL http://mirror/download does not name a .tar.gz/.tgz/.tar archive"):
        resolve_aux_config({"url": "http://mirror/download"})


@pytest.mark.parametrize(
    ("given", "tags", "verify"),
    [
        ({}, None, True),
        ({}, "_skip_ssl_verification", False),
        ({"skip_ssl_verification": True}, None, False),
        ({"skip_ssl_verification": "false"}, None, True),
    ],
)
def test_skip_ssl_verification(given: dict, tags: str | None, verify: bool) -> None:
    assert resolve_aux_config(given, variations=tags).verify_ssl is verify


def test_aux_config_params_round_trip() -> None:
    config = resolve_aux_config({"url": MIRROR, "md5": MD5}, variations="_from.go,_skip_ssl_verification")

    params = json.loads(json.dumps(config.as_params()))

    assert AuxConfig.from_params(params) == config


def test_source_urls_one_rule_for_every_download():
    from imagenet_ops.core.variations import source_urls

    published = ("https://a/x.tar", "https://b/x.tar")
    assert source_urls(published) == published
    assert source_urls(published, url="https://mine/x.tar") == ("https://mine/x.tar",)
    assert source_urls(published, mirror="http://store/", name="x.tar") == ("http://store/x.tar", *published)
    assert source_urls(published, url="file:///d/x.tar", mirror="http://store", name="x.tar") == (
        "http://store/x.tar",
        "file:///d/x.tar",
    )


def test_shared_source_options_say_their_format():
    from imagenet_ops.core.variations import md5_option, mirror_option, url_option

    assert "http://" in mirror_option().described()
    assert url_option("images_url", description="The tar.").format_hint().startswith("a URL")
    assert "several md5s" in md5_option("md5", description="Sums.", several=True).described()
    assert md5_option("md5", description="Sum.").length_bounds() == {"minLength": 32, "maxLength": 32}
