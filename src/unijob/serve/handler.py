"""Find and wrap a user's predictor: ``module:attr``, ``path/to/file.py:attr`` or ``module``.

A handler is either

* a **class** with ``load(self, model_dir)`` and ``predict(self, instances[, parameters])``,
  instantiated once with no arguments; or
* a **module** (or any object) with functions ``load(model_dir)`` and
  ``predict(instances[, parameters])``.

``load`` is optional (a handler may need no artifacts). ``model_dir`` is a :class:`pathlib.Path`
to a local directory, or ``None`` when no model location was given. ``instances`` is the JSON list
of the request's instances; ``parameters`` (only passed when ``predict`` accepts a second argument)
is the request's ``parameters`` object or ``{}``. ``predict`` returns one prediction per instance: a
list, a tuple or anything with ``tolist()`` (a NumPy array). ``predict`` may be ``async def``.
``load`` may be ``async def`` too. A handler raises :class:`BadRequest` to answer 400 with its
message.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional


class BadRequest(ValueError):
    """Raise from ``predict`` to answer HTTP 400 with this message (the server keeps serving)."""


class HandlerError(Exception):
    """The handler reference cannot be imported or does not have the expected shape."""


@dataclass
class Handler:
    """A loaded handler reference: bound ``load`` (or None) and ``predict``.

    Attributes:
        ref: the reference as given (``module:attr``).
        load: ``load(model_dir)`` or None.
        predict: ``predict(instances)`` or ``predict(instances, parameters)``.
        wants_parameters: ``predict`` takes the ``parameters`` argument.
        is_async: ``predict`` is a coroutine function.
    """

    ref: str
    load: Optional[Callable[[Optional[Path]], Any]]
    predict: Callable[..., Any]
    wants_parameters: bool
    is_async: bool


def _import_target(ref: str, base_dir: Optional[Path]) -> Any:
    mod_part, _, attr = ref.partition(":")
    if not mod_part:
        raise HandlerError(f"handler {ref!r}: expected module:attr, path/to/file.py:attr or module")
    if mod_part.endswith(".py") or "/" in mod_part:
        path = Path(mod_part)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if not path.is_file():
            raise HandlerError(f"handler {ref!r}: no file {path}")
        name = f"unijob_handler_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise HandlerError(f"handler {ref!r}: cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        # Let the handler import its neighbours, as `python file.py` would.
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        spec.loader.exec_module(module)
        shown = str(path)
    else:
        if base_dir is not None and str(base_dir) not in sys.path:
            sys.path.insert(0, str(base_dir))
        try:
            module = importlib.import_module(mod_part)
        except ModuleNotFoundError as e:
            # Only the handler's own module (or a parent package) missing is a bad reference; a
            # module the handler imports being missing is the handler's ImportError.
            if e.name and (mod_part == e.name or mod_part.startswith(e.name + ".")):
                raise HandlerError(f"handler {ref!r}: no module named {e.name!r} (searched {sys.path[0]!r} "
                                   "first; give path/to/file.py:attr or set the working directory)") from None
            raise
        shown = mod_part
    if not attr:
        return module
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            names = [n for n in dir(obj) if not n.startswith("_")]
            import difflib

            close = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            owner = shown if obj is module else getattr(obj, "__name__", type(obj).__name__)
            raise HandlerError(f"handler {ref!r}: {owner!r} has no attribute {part!r}{hint}") from None
    return obj


def _accepts_two(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def load_handler(ref: str, base_dir: Optional[Path] = None) -> Handler:
    """Import ``ref`` and return its :class:`Handler`.

    Args:
        ref: ``module:attr``, ``path/to/file.py:attr`` (relative to ``base_dir``) or ``module``.
        base_dir: where relative files and top-level modules are looked up first (default: the
            current directory via ``sys.path``).

    Raises:
        HandlerError: nothing importable there, or no ``predict`` on it. Exceptions raised while
            importing the user's module propagate unchanged (they are the user's bug).
    """
    target = _import_target(ref, base_dir)
    if inspect.isclass(target):
        try:
            target = target()
        except TypeError as e:
            raise HandlerError(f"handler {ref!r}: the class must be constructible without arguments ({e})") from None
    predict = getattr(target, "predict", None)
    if not callable(predict):
        raise HandlerError(f"handler {ref!r}: expected a class or module with predict(instances) "
                           "(and optionally load(model_dir)); found no predict")
    load = getattr(target, "load", None)
    if load is not None and not callable(load):
        load = None
    return Handler(ref=ref, load=load, predict=predict, wants_parameters=_accepts_two(predict),
                   is_async=inspect.iscoroutinefunction(predict))
