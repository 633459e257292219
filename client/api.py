"""Typed client for the registry's HTTP API (``protocol_spec/HTTP_API.md``).

One method per endpoint, typed responses, and a few conveniences that build and sign a statement
locally before sending it (:meth:`RegistryClient.request_access`, :meth:`~RegistryClient.approve`,
:meth:`~RegistryClient.revoke`). Private keys never leave this process; the registry only ever
sees signatures.

Every foreign exception — httpx transport errors, problem+json answers, bodies that do not parse —
is translated to an :class:`~ostraca.protocol_spec.errors.OstracaError` in exactly one place,
:meth:`RegistryClient._send`. Logging in is automatic: a bearer token is cached in
``$OSTRACA_HOME/token.json`` (mode 0600) until shortly before it expires, and a 401 on an
authenticated call triggers one fresh login and one retry.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ostraca.protocol_spec import (
    AccessGrant,
    AccessRequest,
    AuthenticationError,
    DatasetManifest,
    Envelope,
    KeyRotation,
    MalformedError,
    PublicKey,
    Revocation,
    SigningKey,
    VerifyKey,
    sign_statement,
    split_dataset,
    utc_now,
)
from ostraca.protocol_spec.auth import login_message, registration_message
from ostraca.protocol_spec.errors import UnavailableError

from .config import ClientConfig
from .files import atomic_write
from .keystore import load_signing_key
from .problems import error_from_problem
from .trust import OfferedKeys

__all__ = [
    "AuditEvent",
    "BlobRef",
    "Challenge",
    "ColumnInfo",
    "DatasetDetail",
    "DatasetList",
    "DatasetSummary",
    "GrantItem",
    "KeyInfo",
    "Namespace",
    "Principal",
    "PublishedVersion",
    "RegistryClient",
    "RequestItem",
    "RevocationItem",
    "RotationItem",
    "TokenInfo",
    "UploadStatus",
    "VersionInfo",
]

TOKEN_MARGIN = timedelta(seconds=60)
"""A cached token this close to its expiry is treated as expired."""
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


# ── response models ──────────────────────────────────────────────────────────────────────────


class _Resp(BaseModel):
    """Base of response bodies: unknown fields from a newer registry are kept, not refused."""

    model_config = ConfigDict(extra="allow", frozen=True)


class _HasEnvelope(_Resp):
    envelope: dict[str, Any]

    @property
    def signed(self) -> Envelope:
        """The signed statement exactly as the registry stored it (re-verify before trusting)."""
        return Envelope.from_dict(self.envelope)


class KeyInfo(_Resp):
    """A key as the registry lists it: a :class:`PublicKey` plus its status. A registry older
    than key rotation sends no status: every key it lists is active."""

    keyid: str
    algorithm: Literal["ed25519"] = "ed25519"
    public: str
    status: Literal["active", "rotated"] = "active"
    created: datetime | None = None
    rotated: datetime | None = None
    successor: str | None = None

    def to_verify_key(self) -> VerifyKey:
        key = VerifyKey.from_b64(self.public)
        if key.keyid != self.keyid:
            raise MalformedError(f"the registry lists key {self.keyid[:16]}… under another id")
        return key


class Principal(_Resp):
    keyid: str
    name: str
    kind: Literal["institution", "researcher"]
    affiliation: str = ""
    keys: list[PublicKey] = Field(default_factory=list)
    """Active keys."""
    rotated_keys: list[KeyInfo] = Field(default_factory=list)
    created: datetime | None = None


class Challenge(_Resp):
    nonce: str
    expires: datetime


class TokenInfo(_Resp):
    token: str
    expires: datetime
    principal: Principal


class Namespace(_Resp):
    name: str
    owner: str
    keys: list[KeyInfo] = Field(default_factory=list)
    """Active keys (sign new versions and grants) and rotated ones (verify what they signed)."""


class DatasetSummary(_Resp):
    dataset: str
    namespace: str
    description: str = ""
    license: str
    latest_version: int
    total_rows: int
    total_bytes: int
    publisher: str
    updated: datetime | None = None


class DatasetList(_Resp):
    items: list[DatasetSummary]
    total: int


class ColumnInfo(_Resp):
    name: str
    type: str


class VersionInfo(_Resp):
    version: int
    digest: str
    created: datetime | None = None
    total_rows: int
    total_bytes: int
    shards: int


class DatasetDetail(DatasetSummary):
    terms: str
    terms_sha256: str
    columns: list[ColumnInfo] = Field(default_factory=list)
    versions: list[VersionInfo] = Field(default_factory=list)


class PublishedVersion(_Resp):
    dataset: str
    version: int
    digest: str


class UploadStatus(_Resp):
    upload_id: str
    offset: int
    size: int | None = None
    expires: datetime | None = None


class BlobRef(_Resp):
    digest: str
    size: int


class RequestItem(_HasEnvelope):
    request_id: str
    dataset: str
    requester: Principal
    purpose: str
    status: Literal["pending", "granted", "denied"]
    created: datetime | None = None
    decided: datetime | None = None
    reason: str | None = None
    grant_id: str | None = None


class GrantItem(_HasEnvelope):
    grant_id: str
    dataset: str
    publisher: str
    grantee: str
    request: str | None = None
    min_version: int = 1
    max_version: int | None = None
    columns: list[str] | None = None
    not_before: datetime
    expires: datetime
    created: datetime | None = None
    revoked: bool = False
    revocation: dict[str, Any] | None = None


class RevocationItem(_HasEnvelope):
    grant_id: str
    revoked_at: datetime


class RotationItem(_HasEnvelope):
    """A stored KeyRotation (``signed`` is the envelope: verify it with the old key)."""

    rotation_id: str
    principal: str
    old_key: str
    new_key: PublicKey
    reason: str = ""
    created: datetime | None = None
    rotated_at: datetime | None = None


class RotationChain(_Resp):
    principal: str
    active_key: str
    items: list[RotationItem] = Field(default_factory=list)


class AuditEvent(_Resp):
    id: int | str
    time: datetime
    action: str
    principal: str | None = None
    dataset: str | None = None
    version: int | None = None
    grant_id: str | None = None
    detail: Any = None


class _Items(_Resp):
    items: list[Any]


M = TypeVar("M", bound=BaseModel)


def _blob_path(digest: str) -> str:
    hex_ = digest.removeprefix("sha256:")
    if len(hex_) != 64 or any(c not in "0123456789abcdef" for c in hex_):
        raise MalformedError(f"not a sha256 digest: {digest!r}")
    return f"/v1/blobs/sha256:{hex_}"


def _dataset_path(dataset: str) -> str:
    ns, name = split_dataset(dataset)
    return f"/v1/datasets/{ns}/{name}"


# ── the client ───────────────────────────────────────────────────────────────────────────────


class RegistryClient:
    """A session with one registry as one identity.

    ``transport`` replaces httpx's network transport (tests, proxies); ``key`` replaces the key
    file named by ``config.identity`` (loaded lazily, only when a call needs to sign).
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        key: SigningKey | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    ) -> None:
        self.config = config
        self._key = key
        self._token: TokenInfo | None = None
        self._http = httpx.Client(
            base_url=config.registry,
            transport=transport,
            timeout=timeout,
            headers={"User-Agent": "ostraca-client/1"},
            follow_redirects=False,
        )

    # lifecycle

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # identity

    @property
    def base_url(self) -> str:
        """The registry's root URL without a trailing slash (paths start with ``/v1``)."""
        return self.config.registry

    @property
    def key(self) -> SigningKey:
        """This identity's signing key (read from ``config.identity`` on first use)."""
        if self._key is None:
            self._key = load_signing_key(
                self.config.identity_path, passphrase=self.config.passphrase
            )
        return self._key

    @property
    def keyid(self) -> str:
        return self.key.keyid

    def auth_headers(self) -> dict[str, str]:
        """``{"Authorization": "Bearer …"}``, logging in first when no valid token is cached."""
        token = self._valid_token() or self.login()
        return {"Authorization": f"Bearer {token.token}"}

    # the one place where foreign exceptions become ours

    def _send(
        self,
        method: str,
        path: str,
        *,
        auth: bool = False,
        json_body: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        dataset: str | None = None,
        ok_404: bool = False,
    ) -> httpx.Response:
        """Send one request; return the response on 2xx (or 404 when ``ok_404``), else raise.

        ``dataset`` names the dataset a call concerns, so that an access error can carry the
        exact command that requests access.
        """
        hdrs = dict(headers or {})
        clean_params = {k: v for k, v in (params or {}).items() if v is not None}
        for attempt in (1, 2):
            if auth:
                hdrs.update(self.auth_headers())
            try:
                response = self._http.request(
                    method, path, json=json_body, content=content, params=clean_params, headers=hdrs
                )
            except httpx.ConnectError as exc:
                raise UnavailableError(
                    f"cannot reach the registry at {self.base_url}: {exc}",
                    hint="is it running? start one with `ostraca server run`, or point "
                    "--registry / OSTRACA_REGISTRY at the right URL",
                ) from exc
            except httpx.TimeoutException as exc:
                raise UnavailableError(
                    f"the registry at {self.base_url} did not answer in time ({type(exc).__name__})"
                ) from exc
            except httpx.HTTPError as exc:
                raise UnavailableError(
                    f"talking to the registry at {self.base_url} failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if response.status_code == 401 and auth and attempt == 1:
                self._forget_token()
                continue
            if response.is_success or (ok_404 and response.status_code == 404):
                return response
            raise error_from_problem(
                response.status_code,
                response.content,
                content_type=response.headers.get("Content-Type", ""),
                request=f"{method} {response.request.url.path}",
                dataset=dataset,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _post_envelope(
        self, path: str, envelope: Envelope, model: type[M], *, auth: bool = True
    ) -> M:
        """POST a signed statement (its envelope, byte for byte) and parse the answer."""
        response = self._send(
            "POST",
            path,
            auth=auth,
            content=envelope.to_json(),
            headers={"Content-Type": "application/json"},
        )
        return self._json(response, model)

    def _json(self, response: httpx.Response, model: type[M]) -> M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(body)"
            raise MalformedError(
                f"the registry's answer to {response.request.method} {response.request.url.path} "
                f"is not a valid {model.__name__}: {where}: {first['msg']}"
            ) from exc

    def _items(self, response: httpx.Response, model: type[M]) -> list[M]:
        return [
            self._json_obj(item, model, response) for item in self._json(response, _Items).items
        ]

    def _json_obj(self, obj: Any, model: type[M], response: httpx.Response) -> M:
        try:
            return model.model_validate(obj)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(item)"
            raise MalformedError(
                f"an item in the registry's answer to {response.request.url.path} is not a valid "
                f"{model.__name__}: {where}: {first['msg']}"
            ) from exc

    # tokens

    def _valid_token(self) -> TokenInfo | None:
        now = datetime.now(UTC)
        if self._token is None:
            self._token = self._read_cached_token()
        if self._token is not None and self._token.expires - TOKEN_MARGIN > now:
            return self._token
        return None

    def _read_cached_token(self) -> TokenInfo | None:
        try:
            data = json.loads(self.config.token_file.read_text())
            if data.get("registry") != self.base_url or data.get("keyid") != self.keyid:
                return None
            return TokenInfo.model_validate(data["token"])
        except (OSError, ValueError, KeyError, TypeError, ValidationError):
            return None

    def _forget_token(self) -> None:
        self._token = None
        self.config.token_file.unlink(missing_ok=True)

    def _store_token(self, token: TokenInfo) -> None:
        path = self.config.token_file
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "registry": self.base_url,
            "keyid": self.keyid,
            "token": token.model_dump(mode="json"),
        }
        atomic_write(path, json.dumps(record).encode(), mode=0o600)

    # identity endpoints

    def register(self, name: str, kind: str, affiliation: str = "") -> Principal:
        """Register this key (proof of possession: a signature over ``registration_message``)."""
        public = self.key.public.b64
        message = registration_message(
            public_key=public, name=name, kind=kind, affiliation=affiliation
        )
        body = {
            "public_key": PublicKey.from_verify_key(self.key.public).model_dump(mode="json"),
            "name": name,
            "kind": kind,
            "affiliation": affiliation,
            "signature": _b64(self.key.sign(message)),
        }
        return self._json(self._send("POST", "/v1/principals", json_body=body), Principal)

    def get_principal(self, keyid: str) -> Principal:
        return self._json(self._send("GET", f"/v1/principals/{keyid}"), Principal)

    def challenge(self) -> Challenge:
        body = {"keyid": self.keyid}
        return self._json(self._send("POST", "/v1/auth/challenge", json_body=body), Challenge)

    def login(self) -> TokenInfo:
        """Challenge → sign ``login_message(nonce)`` → bearer token (cached on disk, 0600)."""
        nonce = self.challenge().nonce
        body = {
            "keyid": self.keyid,
            "nonce": nonce,
            "signature": _b64(self.key.sign(login_message(nonce))),
        }
        token = self._json(self._send("POST", "/v1/auth/token", json_body=body), TokenInfo)
        self._token = token
        self._store_token(token)
        return token

    def logout(self) -> None:
        """Revoke this identity's tokens on the registry (this session's and the cached one)."""
        tokens = {t.token for t in (self._token, self._read_cached_token()) if t is not None}
        for token in tokens:
            with contextlib.suppress(AuthenticationError):  # already expired or revoked
                self._send("DELETE", "/v1/auth/token", headers={"Authorization": f"Bearer {token}"})
        self._forget_token()

    def whoami(self) -> Principal:
        return self._json(self._send("GET", "/v1/whoami", auth=True), Principal)

    def rotate_key(self, new_key: SigningKey, *, reason: str = "") -> RotationItem:
        """Hand this identity's authority to ``new_key``: sign a :class:`KeyRotation` with the
        current key and with ``new_key`` (proof of possession of both) and submit it.

        From then on this client signs and logs in with ``new_key`` (the registry revoked every
        token of the old one). Saving ``new_key`` to the identity file is the caller's job
        (``ostraca rotate-key`` does it, keeping the old file).
        """
        old = self.key
        statement = KeyRotation(
            old_key=old.keyid,
            new_key=PublicKey.from_verify_key(new_key.public),
            reason=reason,
            created=utc_now(),
        )
        envelope = sign_statement(statement, [old, new_key])
        path = f"/v1/principals/{old.keyid}/rotations"
        item = self._post_envelope(path, envelope, RotationItem, auth=False)
        self._forget_token()
        self._key = new_key
        return item

    def rotations(self, keyid: str) -> list[RotationItem]:
        """The rotation chain of the principal with key ``keyid`` (any of its keys), oldest
        first. Not verified here: each link must verify with the key before it."""
        response = self._send("GET", f"/v1/principals/{keyid}/rotations")
        return self._json(response, RotationChain).items

    # namespaces and datasets

    def create_namespace(self, name: str) -> Namespace:
        response = self._send("POST", "/v1/namespaces", auth=True, json_body={"name": name})
        return self._json(response, Namespace)

    def get_namespace(self, name: str) -> Namespace:
        return self._json(self._send("GET", f"/v1/namespaces/{name}"), Namespace)

    def namespace_keys(self, name: str) -> OfferedKeys:
        """The keys the registry lists for ``name``, by key id: the active ones and the rotated
        ones (which still verify the versions and grants they signed before their rotation).

        A plain mapping for verification; :class:`~ostraca.client.trust.TrustStore` also reads
        which keys are rotated and fetches the owner's rotation chain from it when a pinned
        namespace presents a new key.
        """
        ns = self.get_namespace(name)
        return OfferedKeys(
            {k.keyid: k.to_verify_key() for k in ns.keys},
            rotated={
                k.keyid: k.rotated or datetime(1970, 1, 1, tzinfo=UTC)
                for k in ns.keys
                if k.status == "rotated"
            },
            fetch_rotations=lambda: [r.signed for r in self.rotations(ns.owner)],
        )

    def list_datasets(
        self, *, search: str | None = None, limit: int | None = None, offset: int | None = None
    ) -> DatasetList:
        params: dict[str, str | int] = {}
        if search:
            params["search"] = search
        if limit is not None:
            params["limit"] = limit
        if offset is not None:
            params["offset"] = offset
        return self._json(self._send("GET", "/v1/datasets", params=params), DatasetList)

    def get_dataset(self, dataset: str) -> DatasetDetail:
        response = self._send("GET", _dataset_path(dataset), dataset=dataset)
        return self._json(response, DatasetDetail)

    def find_dataset(self, dataset: str) -> DatasetDetail | None:
        """Like :meth:`get_dataset`, but ``None`` for a dataset with no version yet."""
        response = self._send("GET", _dataset_path(dataset), ok_404=True)
        return None if response.status_code == 404 else self._json(response, DatasetDetail)

    def get_manifest_bytes(self, dataset: str, version: int | str = "latest") -> bytes:
        """The manifest envelope of ``dataset`` at ``version``, byte for byte as published."""
        if version != "latest" and not (isinstance(version, int) and version >= 1):
            raise MalformedError(f"version must be a positive integer or 'latest', not {version!r}")
        path = f"{_dataset_path(dataset)}/versions/{version}/manifest"
        return self._send("GET", path, dataset=dataset).content

    def get_manifest_envelope(self, dataset: str, version: int | str = "latest") -> Envelope:
        """The manifest envelope, parsed (not verified: see ``verify_manifest``)."""
        return Envelope.from_json(self.get_manifest_bytes(dataset, version))

    def publish_version(self, envelope: Envelope) -> PublishedVersion:
        """Publish a signed manifest; every blob it names must already be on the registry."""
        manifest = DatasetManifest.from_json_obj(json.loads(envelope.payload))
        path = f"{_dataset_path(manifest.dataset)}/versions"
        return self._post_envelope(path, envelope, PublishedVersion)

    # blobs

    def start_upload(self, size: int) -> UploadStatus:
        response = self._send("POST", "/v1/uploads", auth=True, json_body={"size": size})
        return self._json(response, UploadStatus)

    def upload_status(self, upload_id: str) -> UploadStatus:
        return self._json(self._send("GET", f"/v1/uploads/{upload_id}", auth=True), UploadStatus)

    def patch_upload(self, upload_id: str, offset: int, data: bytes) -> UploadStatus:
        response = self._send(
            "PATCH",
            f"/v1/uploads/{upload_id}",
            auth=True,
            content=data,
            headers={"Upload-Offset": str(offset), "Content-Type": "application/octet-stream"},
        )
        return self._json(response, UploadStatus)

    def finish_upload(self, upload_id: str, digest: str) -> BlobRef:
        digest = "sha256:" + digest.removeprefix("sha256:")
        response = self._send(
            "PUT", f"/v1/uploads/{upload_id}", auth=True, params={"digest": digest}
        )
        return self._json(response, BlobRef)

    def blob_exists(self, digest: str) -> bool:
        """Whether the registry holds the blob (HEAD). Needs the right to read or publish it."""
        response = self._send("HEAD", _blob_path(digest), auth=True, ok_404=True)
        return response.status_code != 404

    def get_blob(
        self, digest: str, *, byte_range: tuple[int, int] | None = None, dataset: str | None = None
    ) -> bytes:
        """A whole blob (or the inclusive ``byte_range``) in memory — for small blobs such as
        chunk lists. Bulk shard bytes go through the streaming reader instead."""
        headers = {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"} if byte_range else None
        return self._send(
            "GET", _blob_path(digest), auth=True, headers=headers, dataset=dataset
        ).content

    # access requests

    def file_request(self, envelope: Envelope) -> RequestItem:
        return self._post_envelope("/v1/requests", envelope, RequestItem)

    def request_access(
        self, dataset: str, *, purpose: str, terms_sha256: str | None = None
    ) -> RequestItem:
        """Sign an :class:`AccessRequest` accepting ``dataset``'s current terms and file it.

        ``terms_sha256`` pins the terms the user was shown (if the publisher changed them since,
        the registry refuses the request); by default the current terms are fetched now.
        """
        if terms_sha256 is None:
            terms_sha256 = self.get_dataset(dataset).terms_sha256
        statement = AccessRequest(
            dataset=dataset,
            requester=self.keyid,
            purpose=purpose,
            terms_sha256=terms_sha256,
            accept_terms=True,
            created=utc_now(),
            nonce=secrets.token_hex(16),
        )
        return self.file_request(sign_statement(statement, [self.key]))

    def list_requests(
        self, *, dataset: str | None = None, status: str | None = None
    ) -> list[RequestItem]:
        params: dict[str, str | int] = {}
        if dataset:
            params["dataset"] = dataset
        if status:
            params["status"] = status
        response = self._send("GET", "/v1/requests", auth=True, params=params)
        return self._items(response, RequestItem)

    def get_request(self, request_id: str) -> RequestItem:
        response = self._send("GET", f"/v1/requests/{request_id}", auth=True)
        return self._json(response, RequestItem)

    def deny_request(self, request_id: str, reason: str) -> RequestItem:
        response = self._send(
            "POST", f"/v1/requests/{request_id}/deny", auth=True, json_body={"reason": reason}
        )
        return self._json(response, RequestItem)

    # grants and revocations

    def submit_grant(self, envelope: Envelope) -> GrantItem:
        return self._post_envelope("/v1/grants", envelope, GrantItem)

    def approve(
        self,
        request_id: str,
        *,
        expires: datetime,
        not_before: datetime | None = None,
        min_version: int = 1,
        max_version: int | None = None,
        columns: Iterable[str] | None = None,
    ) -> GrantItem:
        """Sign an :class:`AccessGrant` answering a pending request and submit it."""
        request = self.get_request(request_id)
        now = utc_now()
        statement = AccessGrant(
            dataset=request.dataset,
            publisher=self.keyid,
            grantee=request.requester.keyid,
            request=request.request_id,
            min_version=min_version,
            max_version=max_version,
            columns=list(columns) if columns is not None else None,
            not_before=(not_before or now).replace(microsecond=0),
            expires=expires.astimezone(UTC).replace(microsecond=0),
            created=now,
        )
        return self.submit_grant(sign_statement(statement, [self.key]))

    def list_grants(self, *, dataset: str | None = None) -> list[GrantItem]:
        params: dict[str, str | int] = {"dataset": dataset} if dataset else {}
        return self._items(self._send("GET", "/v1/grants", auth=True, params=params), GrantItem)

    def get_grant(self, grant_id: str) -> GrantItem:
        return self._json(self._send("GET", f"/v1/grants/{grant_id}", auth=True), GrantItem)

    def submit_revocation(self, envelope: Envelope) -> RevocationItem:
        return self._post_envelope("/v1/revocations", envelope, RevocationItem)

    def revoke(self, grant_id: str, *, reason: str = "") -> RevocationItem:
        """Sign a :class:`Revocation` of ``grant_id`` and submit it (effective immediately)."""
        grant = self.get_grant(grant_id)
        statement = Revocation(
            dataset=grant.dataset,
            publisher=self.keyid,
            grant=grant.grant_id,
            reason=reason,
            created=utc_now(),
        )
        return self.submit_revocation(sign_statement(statement, [self.key]))

    # audit and operations

    def audit(
        self, dataset: str, *, limit: int | None = None, after: int | str | None = None
    ) -> list[AuditEvent]:
        params: dict[str, str | int] = {}
        if limit is not None:
            params["limit"] = limit
        if after is not None:
            params["after"] = after
        response = self._send("GET", f"{_dataset_path(dataset)}/audit", auth=True, params=params)
        return self._items(response, AuditEvent)

    def healthz(self) -> dict[str, Any]:
        body = self._send("GET", "/healthz").json()
        if not isinstance(body, dict):
            raise MalformedError("the registry's /healthz answer is not a JSON object")
        return body


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
