"""Connections to Google Cloud: Vertex GAPIC clients (REST transport), the explicit retry,
Cloud Logging ``entries:list`` and Cloud Storage uploads over plain authorized HTTP.

The Vertex GAPIC client does not retry by default, so every call here passes :func:`retry`.
Credentials come from ``google.auth.default()`` unless the adapter was given some (tests pass
``AnonymousCredentials``). Everything google is imported inside functions.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from unijob.errors import NotReady, TargetError

INSTALL_HINT = "pip install 'unijob[vertex]'"
LOGGING_ENDPOINT = "https://logging.googleapis.com"
STORAGE_ENDPOINT = "https://storage.googleapis.com"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


def require_sdk() -> Any:
    """``google.cloud.aiplatform_v1``.

    Raises:
        NotReady: google-cloud-aiplatform is not installed (with the install line).
    """
    import importlib

    try:
        return importlib.import_module("google.cloud.aiplatform_v1")
    except ImportError:
        raise NotReady("google-cloud-aiplatform is not installed", hint=INSTALL_HINT) from None


@dataclass
class RetryPolicy:
    """Backoff for transient errors (HTTP 429, 500, 503): seconds; ``deadline`` bounds the total."""

    initial: float = 1.0
    maximum: float = 30.0
    multiplier: float = 2.0
    deadline: float = 120.0


def transient_errors() -> tuple[type[BaseException], ...]:
    from google.api_core import exceptions as gexc

    return (gexc.TooManyRequests, gexc.ServiceUnavailable, gexc.InternalServerError,
            gexc.GatewayTimeout, gexc.DeadlineExceeded)


def retry(policy: RetryPolicy) -> Any:
    """A ``google.api_core.retry.Retry`` on 429/500/503/504."""
    from google.api_core import retry as gretry

    return gretry.Retry(predicate=gretry.if_exception_type(*transient_errors()), initial=policy.initial,
                        maximum=policy.maximum, multiplier=policy.multiplier, timeout=policy.deadline)


class Connection:
    """Clients for one project/location.

    Args:
        project, location: where the resources live.
        api_endpoint: Vertex host override (``http://127.0.0.1:PORT`` in tests).
        logging_endpoint, storage_endpoint: overrides of the Logging and Storage hosts.
        credentials: google-auth credentials; ``None`` = ``google.auth.default()``.
        policy: retry backoff.
    """

    def __init__(self, project: str, location: str, *, api_endpoint: Optional[str] = None,
                 logging_endpoint: Optional[str] = None, storage_endpoint: Optional[str] = None,
                 credentials: Any = None, policy: Optional[RetryPolicy] = None) -> None:
        self.project, self.location = project, location
        self.api_endpoint = api_endpoint or f"https://{location}-aiplatform.googleapis.com"
        self.logging_endpoint = (logging_endpoint or LOGGING_ENDPOINT).rstrip("/")
        self.storage_endpoint = (storage_endpoint or STORAGE_ENDPOINT).rstrip("/")
        self.policy = policy or RetryPolicy()
        self._credentials = credentials
        self._clients: dict[str, Any] = {}
        self._session: Any = None

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def credentials(self) -> Any:
        if self._credentials is None:
            import google.auth
            from google.auth.exceptions import DefaultCredentialsError

            try:
                self._credentials, _ = google.auth.default(scopes=list(SCOPES))
            except DefaultCredentialsError as e:
                raise NotReady(f"no Google Cloud credentials: {e}",
                               hint="run 'gcloud auth application-default login' or set "
                                    "GOOGLE_APPLICATION_CREDENTIALS") from None
        return self._credentials

    def _client(self, kind: str) -> Any:
        if kind not in self._clients:
            aip = require_sdk()
            from google.api_core.client_options import ClientOptions

            cls = {"job": aip.JobServiceClient, "endpoint": aip.EndpointServiceClient,
                   "model": aip.ModelServiceClient, "prediction": aip.PredictionServiceClient}[kind]
            self._clients[kind] = cls(credentials=self.credentials, transport="rest",
                                      client_options=ClientOptions(api_endpoint=self.api_endpoint))
        return self._clients[kind]

    @property
    def jobs(self) -> Any:
        return self._client("job")

    @property
    def endpoints(self) -> Any:
        return self._client("endpoint")

    @property
    def models(self) -> Any:
        return self._client("model")

    @property
    def prediction(self) -> Any:
        return self._client("prediction")

    @property
    def retry(self) -> Any:
        return retry(self.policy)

    def polling(self) -> Any:
        """How long-running operations are polled (``Operation.result(polling=...)``): the
        api_core default (1 s initial, x1.5, 20 s max, 900 s total) with our initial delay."""
        from google.api_core.future import polling

        return polling.DEFAULT_POLLING.with_delay(initial=self.policy.initial, maximum=self.policy.maximum,
                                                  multiplier=1.5)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` under the retry; a non-transient API error becomes :class:`TargetError`."""
        from google.api_core import exceptions as gexc

        try:
            return self.retry(fn)()
        except gexc.NotFound:
            raise
        except gexc.GoogleAPICallError as e:
            raise TargetError(f"Vertex AI refused the request: {e.code} {e.message}") from None
        except Exception as e:  # RetryError after the deadline
            from google.api_core.exceptions import RetryError

            if isinstance(e, RetryError):
                raise TargetError(f"Vertex AI kept failing transiently: {e.cause}") from None
            raise

    # ---- plain authorized HTTP (Logging, Storage) ---------------------------------------------

    @property
    def session(self) -> Any:
        if self._session is None:
            from google.auth.transport.requests import AuthorizedSession

            self._session = AuthorizedSession(self.credentials)
        return self._session

    def http(self, method: str, url: str, **kw: Any) -> Any:
        """One HTTP call under the same retry (429/5xx retried); returns the ``requests`` response.

        Raises:
            TargetError: a non-transient error status.
        """
        from google.api_core import exceptions as gexc

        def once() -> Any:
            r = self.session.request(method, url, timeout=60, **kw)
            if r.status_code == 429 or r.status_code >= 500:
                raise gexc.from_http_status(r.status_code, r.text[:200])
            return r

        try:
            return self.retry(once)()
        except gexc.RetryError as e:
            raise TargetError(f"{method} {url} kept failing: {e.cause}") from None

    def list_log_entries(self, job_id: str, *, after: Optional[str] = None,
                         resource_type: str = "ml_job") -> Iterator[dict]:
        """Cloud Logging entries of a job, oldest first (``POST /v2/entries:list``).

        Args:
            job_id: the numeric job id (last part of its resource name).
            after: only entries with a timestamp after this RFC 3339 time.
            resource_type: the monitored resource: ``ml_job`` (CustomJob) or
                ``aiplatform.googleapis.com/BatchPredictionJob``.
        """
        flt = f'resource.type="{resource_type}" AND resource.labels.job_id="{job_id}"'
        if after:
            flt += f' AND timestamp>"{after}"'
        body: dict[str, Any] = {"resourceNames": [f"projects/{self.project}"], "filter": flt,
                                "orderBy": "timestamp asc", "pageSize": 1000}
        while True:
            r = self.http("POST", f"{self.logging_endpoint}/v2/entries:list", json=body)
            if r.status_code != 200:
                raise TargetError(f"Cloud Logging refused entries:list: {r.status_code} {r.text[:200]}")
            data = r.json()
            yield from data.get("entries", [])
            if not data.get("nextPageToken"):
                return
            body["pageToken"] = data["nextPageToken"]

    def upload(self, uri: str, data: bytes) -> None:
        """Put ``data`` at ``gs://bucket/name`` unless an object is already there (content-addressed
        names: same name, same bytes). Cloud Storage JSON API media upload."""
        bucket, _, name = uri[len("gs://"):].partition("/")
        obj = urllib.parse.quote(name, safe="")
        r = self.http("GET", f"{self.storage_endpoint}/storage/v1/b/{bucket}/o/{obj}")
        if r.status_code == 200:
            return
        if r.status_code != 404:
            raise TargetError(f"Cloud Storage refused GET {uri}: {r.status_code} {r.text[:200]}")
        r = self.http("POST", f"{self.storage_endpoint}/upload/storage/v1/b/{bucket}/o",
                      params={"uploadType": "media", "name": name}, data=data,
                      headers={"Content-Type": "application/gzip"})
        if r.status_code not in (200, 201):
            raise TargetError(f"Cloud Storage refused the upload to {uri}: {r.status_code} {r.text[:200]}")
