"""Rendering: one Jinja environment, pure (template, values) -> text.

StrictUndefined turns a missing value into an error instead of an empty string;
keep_trailing_newline keeps files byte-identical to what their templates say.
"""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path

from vmstation.errors import TemplateError

# The repository's top-level templates/, shipped in the wheel as the package vmstation.template_files
# (setup.cfg maps it); importlib.resources finds it the same way in a clone, an editable install and a wheel.
TEMPLATE_PACKAGE = "vmstation.template_files"
TEMPLATE_DIR = Path(str(importlib.resources.files(TEMPLATE_PACKAGE)))


def render(name: str, **values) -> str:
    """Render ``templates/<name>`` with ``values``; raise TemplateError naming the template."""
    import jinja2

    try:
        return _environment(str(TEMPLATE_DIR)).get_template(name).render(**values)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template {name!r} not found under {TEMPLATE_DIR}") from exc
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template {name!r}: {exc.message}") from exc
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template {exc.name or name!r} line {exc.lineno}: {exc.message}") from exc


def warm_up() -> None:
    """Import Jinja and build the environment once, before worker threads render (they would queue on the
    import lock)."""
    _environment(str(TEMPLATE_DIR))


def render_string(source: str, **values) -> str:
    """Render a template given as text (used by the benchmark and tests)."""
    import jinja2

    try:
        return _compiled(source).render(**values)
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"inline template: {exc.message}") from exc


@functools.lru_cache(maxsize=64)
def _compiled(source: str):
    """Compiling costs milliseconds; a template rendered for every host is compiled once."""
    return _environment(str(TEMPLATE_DIR)).from_string(source)


@functools.lru_cache(maxsize=None)
def _environment(directory: str):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        # compiled templates kept between runs, keyed by name and source checksum, in Jinja's own private
        # per-user directory (0700, its owner checked): a no-op run does not compile every template again
        bytecode_cache=jinja2.FileSystemBytecodeCache(),
    )
    env.filters["to_json"] = _to_json
    env.filters["to_yaml_string"] = _to_yaml_string
    env.filters["proxy_url"] = _proxy_url
    env.filters["kubeadm_api"] = _kubeadm_api
    env.filters["pause_image"] = _pause_image
    return env


def _to_json(value) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def _to_yaml_string(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    import json

    return json.dumps(str(value))


def _kubeadm_api(kubernetes_version: str) -> str:
    """The kubeadm config API a cluster at this version reads (one rule for the templates and the checker)."""
    from vmstation.config_checks import kubeadm_api_version

    return kubeadm_api_version(kubernetes_version)


def _pause_image(kubernetes_version: str) -> str:
    """containerd's sandbox image for the cluster's version (versions.pause_image)."""
    from vmstation.versions import pause_image

    return pause_image(kubernetes_version)


def _proxy_url(value: str) -> str:
    """An apt proxy rebuilt from its parsed parts (scheme, host, port): nothing else of the string survives."""
    from vmstation.values import proxy_url

    try:
        return proxy_url(value)
    except ValueError as exc:
        raise TemplateError(f"apt_proxy: {exc}") from None
