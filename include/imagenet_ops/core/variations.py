"""CM variation tables as data, and the three views derived from one table.

A :class:`VariationTable` declares an artifact's variation *groups* (one choice each, like
CM's ``download-source`` group) and free *options* (URL, checksum, flags, numbers). From
that one declaration come:

* the Airflow trigger form (:meth:`VariationTable.param_specs`, plain dicts fed to ``Param``),
* the CLI options (:meth:`VariationTable.add_cli_arguments`),
* the CM tag parser (:meth:`VariationTable.parse_tags`: ``_from.dropbox,_2012``).

Resolution follows CM: group defaults, then the chosen variations, then matching combinations
(``a,b`` entries win), then explicit options.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from imagenet_ops.core.errors import ConfigError

_PY_TYPES = {"string": str, "integer": int, "number": float, "boolean": bool}


@dataclass(frozen=True)
class Choice:
    """One variation of a group: its name, display title, and the config values it sets."""

    name: str
    title: str
    values: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Group:
    """A CM variation group: exactly one :class:`Choice` applies; its tag is ``_<tag_prefix><name>``."""

    name: str
    title: str
    description: str
    choices: tuple[Choice, ...]
    default: str
    tag_prefix: str = ""
    section: str = "Variations"

    def choice(self, name: str) -> Choice:
        for c in self.choices:
            if name == c.name or name in c.aliases:
                return c
        raise ConfigError(f"{self.name}: unknown variation {name!r}; choose one of {', '.join(c.name for c in self.choices)}")


@dataclass(frozen=True)
class Option:
    """A free option. ``tag`` makes a boolean flag tag (``_skip_ssl_verification``);
    ``tag_prefix`` makes a valued tag (``_batch_size.8``)."""

    name: str
    type: str
    title: str
    description: str
    default: Any = None
    optional: bool = True
    section: str = "Options"
    tag: str | None = None
    tag_prefix: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    hint: str | None = None
    """The accepted format in words, for the form and ``--help``; known patterns have one already."""

    def format_hint(self) -> str | None:
        """The accepted format in words (``hint``, else the wording of a known ``pattern``)."""
        return self.hint or PATTERN_HINTS.get(self.pattern or "")

    def length_bounds(self) -> dict[str, int]:
        """``minLength``/``maxLength`` a fixed-length hex pattern implies (the form enforces them while typing)."""
        fixed = re.fullmatch(r"\^\[0-9a-fA-F\]\{(\d+)\}(.*)\$", self.pattern or "")
        if not fixed:
            return {}
        n = int(fixed.group(1))
        return {"minLength": n} if fixed.group(2) else {"minLength": n, "maxLength": n}

    def described(self) -> str:
        """The description plus the bounds and format the value must meet (what the form shows)."""
        text = self.description
        if self.minimum is not None and self.maximum is not None:
            text += f" Range: {_num(self.minimum)} to {_num(self.maximum)}."
        elif self.minimum is not None:
            text += f" Minimum: {_num(self.minimum)}."
        elif self.maximum is not None:
            text += f" Maximum: {_num(self.maximum)}."
        hint = self.format_hint()
        if hint:
            text += f" Format: {hint}."
        if self.optional:
            text += " Optional."
        return text

    def convert(self, raw: Any, origin: str) -> Any:
        if raw is None:
            return None
        kind = _PY_TYPES[self.type]
        if kind is bool and isinstance(raw, str):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{origin}: {self.name} must be a boolean, got {raw!r}")
        try:
            value = kind(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{origin}: {self.name} must be {self.type}, got {raw!r}") from exc
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"{origin}: {self.name}={value} is below the minimum {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ConfigError(f"{origin}: {self.name}={value} is above the maximum {self.maximum}")
        if self.pattern is not None and isinstance(value, str) and not re.search(self.pattern, value):
            raise ConfigError(f"{origin}: {self.name}={value!r} does not match {self.pattern}")
        return value


def _num(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


PATTERN_HINTS: dict[str, str] = {
    r"^(https?|file)://": "a URL starting with http://, https:// or file://",
    r"^[0-9a-fA-F]{32}$": "32 hex digits (an md5)",
    r"^[0-9a-fA-F]{64}$": "64 hex digits (a sha256)",
    r"^[0-9a-fA-F]{32}(,[0-9a-fA-F]{32})*$": "32 hex digits (an md5), or several md5s separated by commas",
    r"^\s*-?[0-9.]+(e-?[0-9]+)?(\s+-?[0-9.]+(e-?[0-9]+)?)*\s*$": "numbers separated by spaces, e.g. 123.68 116.78 103.94",
    r"^(float32|int8|uint8)$": "float32, int8 or uint8",
}
"""Known patterns in words: the trigger form checks patterns only on submit, so each field says its format."""


SKIP_SSL_VERIFICATION = Option(
    "skip_ssl_verification",
    "boolean",
    "Skip TLS verification",
    "Do not verify TLS certificates of the mirrors.",
    default=False,
    optional=False,
    section="Custom source",
    tag="skip_ssl_verification",
)
"""CM's ``_skip_ssl_verification``, shared by every artifact that downloads."""

URL_PATTERN = r"^(https?|file)://"
MD5_PATTERN = r"^[0-9a-fA-F]{32}$"
MD5_LIST_PATTERN = r"^[0-9a-fA-F]{32}(,[0-9a-fA-F]{32})*$"


SOURCE_SECTION = "Custom source"


def mirror_option(name: str = "mirror") -> Option:
    """The internal artifact store tried before the published mirrors (``<mirror>/<file name>``)."""
    return Option(
        name,
        "string",
        "Mirror base URL",
        "Internal artifact store tried first: files are fetched as <mirror>/<file name>.",
        section=SOURCE_SECTION,
        pattern=URL_PATTERN,
    )


def url_option(name: str, *, title: str = "Custom URL", description: str, section: str = SOURCE_SECTION) -> Option:
    """A URL that replaces the published mirrors of one download."""
    return Option(name, "string", title, description, section=section, pattern=URL_PATTERN)


def md5_option(
    name: str, *, title: str = "Custom md5", description: str, several: bool = False, section: str = SOURCE_SECTION
) -> Option:
    """An md5 (or, with ``several``, comma-separated md5s) that replaces or sets a download's expected sum."""
    pattern = MD5_LIST_PATTERN if several else MD5_PATTERN
    return Option(name, "string", title, description, section=section, pattern=pattern)


def source_urls(
    published: Iterable[str], *, url: str | None = None, mirror: str | None = None, name: str = ""
) -> tuple[str, ...]:
    """The URLs one download tries, in order: a custom ``url`` alone replaces the published ones, and a
    ``mirror`` puts ``<mirror>/<name>`` first.

    Args:
        published: the download's published mirrors.
        url: the user's URL for it, if any.
        mirror: the user's internal artifact store, if any.
        name: the file name to fetch from the mirror.
    """
    urls = (url,) if url else tuple(published)
    if mirror:
        urls = (f"{mirror.rstrip('/')}/{name}", *urls)
    return urls


@dataclass(frozen=True)
class Combo:
    """CM combination variation ``a,b``: applies when every ``group: choice`` in ``when`` holds."""

    when: Mapping[str, str]
    values: Mapping[str, Any]


def split_tags(tags: str | Iterable[str] | None) -> list[str]:
    """``"_a,_b c"`` or ``["_a", "b"]`` -> ``["a", "b"]`` (leading ``_`` optional, CM's ``tags=`` prefix too)."""
    if not tags:
        return []
    items = tags.replace(" ", ",").split(",") if isinstance(tags, str) else list(tags)
    out = []
    for item in items:
        item = item.strip()
        if item.startswith("tags="):
            item = item[5:]
        item = item.lstrip("_")
        if item:
            out.append(item)
    return out


@dataclass(frozen=True)
class VariationTable:
    """All variations of one artifact; see the module docstring."""

    artifact: str
    groups: tuple[Group, ...]
    options: tuple[Option, ...] = ()
    combos: tuple[Combo, ...] = ()
    tags_param: str = "variations"

    def group(self, name: str) -> Group:
        return next(g for g in self.groups if g.name == name)

    def _fields(self) -> dict[str, Group | Option]:
        return {**{g.name: g for g in self.groups}, **{o.name: o for o in self.options}}

    def tag_names(self) -> list[str]:
        """Every accepted tag, with its leading underscore."""
        names = [f"_{g.tag_prefix}{n}" for g in self.groups for c in g.choices for n in (c.name, *c.aliases)]
        names += [f"_{o.tag}" for o in self.options if o.tag]
        names += [f"_{o.tag_prefix}<{o.type}>" for o in self.options if o.tag_prefix]
        return names

    def parse_tags(self, tags: str | Iterable[str] | None) -> dict[str, Any]:
        """Map CM tags to ``{field: value}``.

        Raises:
            ConfigError: an unknown tag (the message lists the known ones), or two tags for one group.
        """
        picked: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for tag in split_tags(tags):
            field_name, value = self._match_tag(tag)
            if field_name in picked and picked[field_name] != value:
                raise ConfigError(
                    f"conflicting variations _{origin[field_name]} and _{tag}: both set {field_name} "
                    f"({picked[field_name]!r} vs {value!r})"
                )
            picked[field_name], origin[field_name] = value, tag
        return picked

    def _match_tag(self, tag: str) -> tuple[str, Any]:
        for g in self.groups:
            if g.tag_prefix and not tag.startswith(g.tag_prefix):
                continue
            name = tag[len(g.tag_prefix) :]
            for c in g.choices:
                if name == c.name or name in c.aliases:
                    return g.name, c.name
        for o in self.options:
            if o.tag and tag == o.tag:
                return o.name, True
            if o.tag_prefix and tag.startswith(o.tag_prefix):
                return o.name, o.convert(tag[len(o.tag_prefix) :], f"tag _{tag}")
        raise ConfigError(f"unknown variation tag _{tag} for {self.artifact}; known tags: {', '.join(self.tag_names())}")

    def selections(self, given: Mapping[str, Any] | None = None, tags: str | Iterable[str] | None = None) -> dict[str, Any]:
        """Merge defaults, explicitly given values and CM tags into one ``{field: value}``.

        A tag overrides a field left at its default; a tag that contradicts a field explicitly
        set to another non-default value is a conflict.

        Raises:
            ConfigError: unknown field, unknown choice, wrong type, or a tag/field conflict.
        """
        fields = self._fields()
        given = {k: v for k, v in (given or {}).items() if k != self.tags_param}
        unknown = sorted(set(given) - set(fields))
        if unknown:
            raise ConfigError(f"{self.artifact}: unknown option(s) {', '.join(unknown)}; known: {', '.join(fields)}")
        out: dict[str, Any] = {}
        for name, f in fields.items():
            raw = given.get(name)
            if isinstance(f, Group):
                out[name] = f.choice(raw).name if raw is not None else f.default
            else:
                out[name] = f.convert(raw, f"{self.artifact} option") if raw is not None else f.default
        for name, value in self.parse_tags(tags).items():
            f = fields[name]
            default = f.default
            if out[name] not in (value, default, None):
                raise ConfigError(
                    f"{self.artifact}: variation tag sets {name}={value!r} but {name}={out[name]!r} was given; drop one of them"
                )
            out[name] = value
        return out

    def resolve(self, selections: Mapping[str, Any]) -> dict[str, Any]:
        """Config values from the chosen variations, then the matching combinations (they win)."""
        values: dict[str, Any] = {}
        for g in self.groups:
            values.update(g.choice(selections[g.name]).values)
        for combo in self.combos:
            if all(selections.get(k) == v for k, v in combo.when.items()):
                values.update(combo.values)
        return values

    def param_specs(self) -> dict[str, dict[str, Any]]:
        """Keyword arguments for one ``airflow.sdk.Param`` per field (plus the CM tags field)."""
        specs: dict[str, dict[str, Any]] = {}
        for g in self.groups:
            specs[g.name] = {
                "default": g.default,
                "type": "string",
                "enum": [c.name for c in g.choices],
                "values_display": {c.name: c.title for c in g.choices},
                "title": g.title,
                "description": f"{g.description} CM tags: {', '.join('_' + g.tag_prefix + c.name for c in g.choices)}.",
                "section": g.section,
            }
        for o in self.options:
            tag = f" CM tag: _{o.tag}." if o.tag else (f" CM tag: _{o.tag_prefix}<value>." if o.tag_prefix else "")
            spec: dict[str, Any] = {
                "default": o.default,
                "type": [o.type, "null"] if o.optional else o.type,
                "title": o.title,
                "description": o.described() + tag,
                "section": o.section,
                **o.length_bounds(),
            }
            for key in ("minimum", "maximum", "pattern"):
                if getattr(o, key) is not None:
                    spec[key] = getattr(o, key)
            specs[o.name] = spec
        # Nullable: the form treats a type without "null" as required and would block an empty field.
        specs[self.tags_param] = {
            "default": None,
            "type": ["string", "null"],
            "title": "CM variation tags",
            "description": (
                "Optional CM tag string, e.g. " + ",".join(self.tag_names()[:2]) + ". Tags override fields left at "
                "their defaults; a tag contradicting a field you changed is an error. Known tags: "
                + ", ".join(self.tag_names())
                + "."
            ),
            "section": "Variations",
        }
        return specs

    def add_cli_arguments(self, parser: argparse.ArgumentParser) -> None:
        """One CLI option per field, plus ``--variations`` for CM tags."""
        parser.add_argument(
            f"--{self.tags_param}", default=None, help="CM variation tags, e.g. " + ",".join(self.tag_names()[:2])
        )
        for g in self.groups:
            parser.add_argument(
                f"--{g.name.replace('_', '-')}",
                dest=g.name,
                default=None,
                choices=[c.name for c in g.choices],
                help=f"{g.title} (default {g.default})",
            )
        for o in self.options:
            flag = f"--{o.name.replace('_', '-')}"
            if o.type == "boolean":
                parser.add_argument(flag, dest=o.name, action="store_true", default=None, help=o.description.replace("%", "%%"))
            else:
                text = o.described().replace("%", "%%")  # argparse formats help with %: "76.46%" must stay literal
                parser.add_argument(flag, dest=o.name, default=None, type=_PY_TYPES[o.type], help=text)

    def field_names(self) -> list[str]:
        """Every group and option name (the CM tags field excluded)."""
        return list(self._fields())

    def selections_from_form(self, form: Mapping[str, Any]) -> dict[str, Any]:
        """Selections from a trigger form / params mapping; keys of other params are ignored."""
        fields = self._fields()
        return self.selections({k: v for k, v in form.items() if k in fields}, form.get(self.tags_param))

    def selections_from_args(self, args: argparse.Namespace) -> dict[str, Any]:
        given = {name: getattr(args, name) for name in self._fields() if getattr(args, name, None) is not None}
        return self.selections(given, getattr(args, self.tags_param, None))
