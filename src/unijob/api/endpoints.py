"""Endpoints as a library: :func:`deploy`, :func:`endpoint`, :func:`endpoints` and :class:`Endpoint`.

Usage::

    import unijob

    ep = unijob.deploy("examples/quickstart/endpoint.yaml")    # target "local" by default
    ep.invoke([[0, 1, 2, ...]]).predictions
    ep.set_traffic({"current": 50, "candidate": 50})
    ep.undeploy()

Deployed endpoints are recorded in ``$UNIJOB_HOME/jobs.sqlite3`` (:mod:`unijob.records`), so
:func:`endpoint` finds one again by name from any process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

from unijob.api.specs import SpecLike

if TYPE_CHECKING:
    from unijob.contract import Adapter, EndpointHandle, EndpointStatus, InvokeResult, Plan


class Endpoint:
    """A deployed endpoint, as recorded here.

    Attributes:
        name: the endpoint name. target: where it is deployed. state: the recorded state
            (``DEPLOYED`` after :func:`deploy`; the target's word after ``status()``).
        handle: the adapter's :class:`unijob.contract.EndpointHandle`.
        notes / warnings: from the deploy plan (``auto``'s reasons, ``job:`` models resolved;
            warnings such as a model path that does not exist yet).
    """

    def __init__(self, name: str, target: str, state: str, handle: "EndpointHandle") -> None:
        self.name, self.target, self.state, self.handle = name, target, state, handle
        self.notes: list[str] = []
        self.warnings: list[str] = []

    def __repr__(self) -> str:
        return f"Endpoint(name={self.name!r}, target={self.target!r}, state={self.state!r})"

    def _adapter(self) -> "Adapter":
        from unijob import registry

        return registry.get(self.target)

    def status(self, refresh: bool = True) -> "EndpointStatus":
        """The endpoint's state, traffic split (percent per variant), replicas per variant and URL,
        asked of its target (``refresh=False``: only the recorded state).

        Raises:
            NotFound: the target no longer has it. TargetError: the target failed.
        """
        from unijob.contract import EndpointStatus

        if not refresh:
            return EndpointStatus(state=self.state)
        st = self._adapter().endpoint_status(self.handle)
        self.state = st.state
        return st

    def invoke(self, instances: Any = None, variant: Optional[str] = None, *,
               parameters: Optional[Mapping[str, Any]] = None, body: Any = None,
               timeout: float = 60.0) -> "InvokeResult":
        """Send one request and return the answer (``.predictions``, ``.variant``, ``.latency_seconds``).

        Args:
            instances: the list of instances, sent as ``{"instances": instances}`` (plus
                ``"parameters"``); a dict is taken as the whole request body.
            variant: send to this variant only (SageMaker's ``TargetVariant``).
            body: instead of ``instances``, the whole request body (any JSON value), sent as given.
            timeout: seconds to wait for the answer.

        Raises:
            UsageError: both or neither of instances and body; the payload is not JSON (NaN, sets,
                bytes). TargetError: the endpoint answered an error. NotFound: no such endpoint.
        """
        from unijob.errors import UsageError

        if (instances is None) == (body is None):
            raise UsageError("give the instances, or the whole request body (body=...), not both")
        if body is None and isinstance(instances, Mapping):
            body, instances = dict(instances), None
        if body is not None:
            if parameters is not None:
                raise UsageError("parameters go with a list of instances, not with a whole request body")
            payload: Any = body
        else:
            payload = {"instances": instances}
            if parameters is not None:
                payload["parameters"] = dict(parameters)
        return self._adapter().invoke(self.handle, payload, variant=variant, timeout=timeout)

    def set_traffic(self, split: Mapping[str, int]) -> dict[str, int]:
        """Change the traffic split: percent per variant name, whole numbers summing to 100.

        Returns: the split set. Raises: UsageError: weights that do not sum to 100, unknown variants.
        """
        from unijob.errors import UsageError

        weights = dict(split)
        if any(not isinstance(v, int) or isinstance(v, bool) for v in weights.values()):
            raise UsageError("traffic weights are whole percentages from 0 to 100")
        if sum(weights.values()) != 100:
            raise UsageError(f"traffic weights must sum to 100, got {sum(weights.values())}")
        self._adapter().set_traffic(self.handle, weights)
        return weights

    def undeploy(self) -> None:
        """Delete the endpoint and everything :func:`deploy` created, and its record."""
        from unijob.records import Records

        with Records() as records:
            self._adapter().undeploy(self.handle)
            records.delete_endpoint(self.name, self.target)
        self.state = "DELETED"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "target": self.target, "state": self.state}


def deploy(spec: Union[SpecLike, "Plan"], target: str = "local") -> Endpoint:
    """Deploy ``spec``'s endpoint section on ``target`` (replicas, autoscaling, traffic split).

    Args:
        spec: a JobSpec, the path of a spec file, or an endpoint :class:`Plan` from
            ``unijob.plan(spec, target, endpoint=True)`` (deployed as reviewed; ``target`` ignored).
            A ``model: job:<name-or-id>`` is resolved to the model that job wrote
            (:mod:`unijob.api.models`).
        target: an installed target or ``"auto"``.

    Raises:
        SpecError: no endpoint section, something the target cannot serve, or a ``job:`` model
            whose job did not succeed or wrote no model. TargetError: the deploy failed.
    """
    from unijob import registry
    from unijob.api.specs import plan as make
    from unijob.contract import Plan
    from unijob.errors import UsageError
    from unijob.records import Records

    if isinstance(spec, Plan):
        if spec.kind != "endpoint":
            raise UsageError(f"this is a {spec.kind} plan; deploy takes an endpoint plan (plan(..., endpoint=True))")
        p = spec
    else:
        p = make(spec, target, endpoint=True)
    handle = registry.get(p.target).deploy(p)
    with Records() as records:
        records.put_endpoint(handle.name, p.target, "DEPLOYED", handle.to_dict())
    ep = Endpoint(handle.name, p.target, "DEPLOYED", handle)
    ep.notes, ep.warnings = list(p.notes), list(p.warnings)
    return ep


def _from_row(row: Mapping[str, Any]) -> Endpoint:
    from unijob.contract import EndpointHandle

    return Endpoint(row["name"], row["target"], row["state"], EndpointHandle.from_dict(row["handle"] or
                                                                                       {"target": row["target"], "name": row["name"]}))


def endpoint(name: str, target: Optional[str] = None) -> Endpoint:
    """The endpoint deployed from here as ``name`` (on ``target``, when the name is on several).

    Raises:
        NotFound: no such endpoint in the records. UsageError: the name is on several targets.
    """
    from unijob.records import Records

    with Records() as records:
        return _from_row(records.endpoint(name, target))


def endpoints(*, refresh: bool = False) -> list[Endpoint]:
    """Endpoints deployed from here, newest first; with ``refresh`` each one's state is asked of its
    target (``ep.status()``)."""
    from unijob.records import Records

    with Records() as records:
        out = [_from_row(r) for r in records.endpoints()]
    if refresh:
        for ep in out:
            ep.status()
    return out


def serving_handler(spec: SpecLike, given: Optional[str] = None) -> str:
    """The handler (``module:attr``) a serving image for ``spec``'s endpoint runs: its only one, or
    ``given`` when the variants have several and ``given`` is one of them.

    Raises:
        SpecError: no endpoint section; an endpoint that serves images, not a handler; variants with
            several handlers and ``given`` is None. UsageError: ``given`` is not one of them.
    """
    from unijob.api.specs import as_spec, located
    from unijob.errors import SpecError, UsageError

    spec = as_spec(spec)
    ep = spec.endpoint
    if ep is None:
        raise located(SpecError.at(("endpoint",), "this spec has no endpoint section; give HANDLER instead"), spec)
    variants = ep.resolved_variants()
    handlers = sorted({v.handler for v in variants if v.handler})
    if not handlers:
        raise located(SpecError.at(("endpoint", "handler"), "the endpoint serves an image, not a handler; "
                                   "serve-image builds the image for a handler (module:attr)"), spec)
    if given:
        if given not in handlers:
            raise UsageError(f"HANDLER {given!r} is not the spec's endpoint handler (" + ", ".join(handlers)
                             + "); give one of them, or leave HANDLER out")
        return given
    if len(handlers) > 1:
        which = ", ".join(f"{v.name}: {v.handler or 'image ' + str(v.image)}" for v in variants)
        raise located(SpecError.at(("endpoint", "variants"), f"the variants serve different handlers ({which}); one "
                                   "image serves one handler: give HANDLER to build the image of one of them"), spec)
    return handlers[0]
