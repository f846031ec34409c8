"""Evidence uploads from the edge's uploader to a real hub (uvicorn on a free port, SQLite): SHA-256 checked, a tampered
file refused, an upload cut mid-stream resumed from where the hub's copy stopped, pending uploads resumed after a
restart, one site unable to upload for another, and police users fetching the files with the incident's rules and
HTTP Range."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from test_hub_api import CONFIG, FAST_HASHER, NORTH, PASSWORD, SOUTH, commit, rev, serving

from bench.scenes import Scene, Walker
from edge.embedded_broker import free_tcp_port
from gateway.evidence_upload import EvidenceUploader
from guardlink.models import Evidence, iso
from hub.accounts import AccountError, Accounts, Role
from hub.api import create_app
from hub.database import make_engine, migrate
from hub.tables import EvidenceRow

from conftest import wait_until

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)
USERS = {"north_chief": (Role.CHIEF, ["north"]), "south_chief": (Role.CHIEF, ["south"]), "disp": (Role.DISPATCHER, [])}


@dataclass
class Hub:
    url: str
    engine: Engine
    tokens: dict[str, str]  # site -> its site account's token
    evidence_dir: Path

    @contextmanager
    def client(self, user: str | None = None, token: str | None = None) -> Iterator[httpx.Client]:
        """A police user logged in (session cookie), a bearer token, or anonymous."""
        with httpx.Client(base_url=self.url, timeout=10, headers={"Authorization": f"Bearer {token}"} if token else None) as client:
            if user is not None:
                assert client.post("/api/login", json={"name": user, "password": PASSWORD}).status_code == 200
            yield client

    def uploader(self, queue: Path, site: str = NORTH, url: str | None = None) -> EvidenceUploader:
        return EvidenceUploader(url or self.url, lambda: self.tokens[site], queue, retry_first_s=0.05, retry_max_s=0.5, timeout_s=5)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    workdir = tmp_path_factory.mktemp("evidence-hub")
    engine = make_engine(f"sqlite:///{workdir / 'hub.db'}")
    migrate(engine)
    accounts = Accounts(engine, hasher=FAST_HASHER)
    for name, (role, communities) in USERS.items():
        accounts.add_user(name, role, communities=communities, password=PASSWORD)
    tokens = {}
    for site in (NORTH, SOUTH):
        accounts.add_user(f"edge-{site}", Role.SITE, site=site)
        tokens[site] = accounts.issue_token(f"edge-{site}")
    commit(engine, [rev(NORTH, f"n-{i}", 1) for i in range(8)] + [rev(SOUTH, "s-1", 1)], now=T0)

    async def publish(site: str, command: object) -> None:
        raise RuntimeError("no broker in these tests")

    with serving(create_app(engine=engine, config=CONFIG, publish_command=publish, accounts=accounts)) as url:
        yield Hub(url, engine, tokens, workdir / "hub-evidence")
    engine.dispose()


def evidence_file(path: Path, data: bytes, kind: str = "clip", camera: str = "cam-gate") -> Evidence:
    """A file as the camera's evidence writer reports it."""
    path.write_bytes(data)
    return Evidence(
        kind=kind, camera=camera, path=str(path), media_type="video/mp4" if kind == "clip" else "image/jpeg", bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(), start=iso(T0.timestamp()), end=iso(T0.timestamp() + 10),
    )


@asynccontextmanager
async def uploading(uploader: EvidenceUploader) -> AsyncIterator[EvidenceUploader]:
    task = asyncio.create_task(uploader.run())
    try:
        yield uploader
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def stored(hub: Hub, escalation: str, sha256: str) -> EvidenceRow | None:
    with Session(hub.engine, expire_on_commit=False) as db:
        return db.get(EvidenceRow, (escalation, sha256))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real H.264 MP4 made by ffmpeg."""
    path = Scene(320, 180, 10, 3, [Walker(((0, 0.1, 0.7), (3, 0.9, 0.8)))], seed=3).write(tmp_path_factory.mktemp("clip") / "clip.mp4")
    return path.read_bytes()


# --- uploads ------------------------------------------------------------------------------------------------------------


async def test_an_upload_reaches_the_hub_checked_and_police_fetch_it_with_range_requests(hub: Hub, clip: bytes, tmp_path: Path) -> None:
    item = evidence_file(tmp_path / "n-0-clip.mp4", clip)
    snapshot = evidence_file(tmp_path / "n-0-snapshot.jpg", b"\xff\xd8\xff\xe0 not really a jpeg \xff\xd9", kind="snapshot")
    async with uploading(hub.uploader(tmp_path / "uploads.db")) as uploader:
        uploader.submit("n-0", item)
        uploader.submit("n-0", snapshot)
        await wait_until(lambda: uploader.uploaded == 2, 15, "both files uploaded")
    row = stored(hub, "n-0", item.sha256)
    assert row is not None and row.complete and (row.site, row.camera, row.kind, row.bytes_received) == (NORTH, "cam-gate", "clip", len(clip))
    assert (hub.evidence_dir / row.path).read_bytes() == clip and not list(hub.evidence_dir.rglob("*.partial"))

    url = f"/api/incidents/n-0/evidence/{item.sha256}"
    with hub.client("north_chief") as police:
        whole = police.get(url)
        assert whole.status_code == 200 and whole.content == clip and whole.headers["content-type"] == "video/mp4"
        assert whole.headers["accept-ranges"] == "bytes"
        part = police.get(url, headers={"Range": "bytes=100-1099"})
        assert part.status_code == 206 and part.content == clip[100:1100]
        assert part.headers["content-range"] == f"bytes 100-1099/{len(clip)}"
        tail = police.get(url, headers={"Range": "bytes=-500"})
        assert tail.status_code == 206 and tail.content == clip[-500:]
        assert police.get(url, headers={"Range": f"bytes={len(clip) + 10}-"}).status_code == 416
        image = police.get(f"/api/incidents/n-0/evidence/{snapshot.sha256}")
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    with hub.client("south_chief") as other, hub.client("disp") as dispatcher:
        assert other.get(url).status_code == 404  # another community's incident looks the same as none
        assert dispatcher.get(url).content == clip
    with hub.client() as anonymous:
        assert anonymous.get(url).status_code == 401


async def test_a_tampered_upload_is_refused_and_discarded(hub: Hub, tmp_path: Path) -> None:
    item = evidence_file(tmp_path / "n-1-clip.mp4", b"the camera's clip" * 1000)
    sha = item.sha256
    with hub.client(token=hub.tokens[NORTH]) as site:
        forged = b"a forged clip!!!!" * 1000
        answer = site.put(f"/api/evidence/n-1/{sha}", params={"camera": "cam-gate", "kind": "clip"}, content=forged, headers={"Content-Type": "video/mp4"})
        assert answer.status_code == 422 and "discarded" in answer.json()["detail"]
        assert site.get(f"/api/evidence/n-1/{sha}/status").json() | {"detail": None} == {
            "escalation": "n-1", "sha256": sha, "bytes": len(forged), "received": 0, "complete": False, "detail": None,
        }
    assert not [p for p in hub.evidence_dir.rglob("*") if p.is_file() and sha in p.name]
    # The edge's own file changed after its hash was taken: the hub refuses it, and the uploader gives up on it.
    await asyncio.to_thread(Path(item.path).write_bytes, b"edited on edge!!!" * 1000)
    async with uploading(hub.uploader(tmp_path / "uploads.db")) as uploader:
        uploader.submit("n-1", item)
        await wait_until(lambda: uploader.refused == 1, 15, "the upload refused")
        assert uploader.uploaded == 0 and not uploader.pending
    row = stored(hub, "n-1", sha)
    assert row is not None and not row.complete
    with hub.client("disp") as police:
        detail = police.get("/api/incidents/n-1").json()
        assert police.get(f"/api/incidents/n-1/evidence/{sha}").status_code == 404
    assert detail["evidence"] == []  # the edge never listed it in a revision


async def test_an_upload_cut_mid_stream_resumes_from_what_the_hub_holds(hub: Hub, tmp_path: Path) -> None:
    data = bytes(range(256)) * 12_000  # ~3 MB
    item = evidence_file(tmp_path / "n-2-clip.mp4", data)
    async with cutting_proxy(hub.url, cut_after=1_200_000) as proxy:
        async with uploading(hub.uploader(tmp_path / "uploads.db", url=proxy.url)) as uploader:
            uploader.submit("n-2", item)
            await wait_until(lambda: uploader.uploaded == 1, 20, "the upload finished after the cut")
    starts = [int(m) for request in proxy.requests for m in re.findall(rb"(?i)content-range: bytes (\d+)-", request)]
    assert starts[0] == 0 and len(starts) == 2, starts
    assert 0 < starts[1] <= 1_200_000  # the second PUT continued where the hub's copy stopped, not from the start
    row = stored(hub, "n-2", item.sha256)
    assert row is not None and row.complete and (hub.evidence_dir / row.path).read_bytes() == data


async def test_pending_uploads_survive_an_edge_restart(hub: Hub, tmp_path: Path) -> None:
    item = evidence_file(tmp_path / "n-3-snapshot.jpg", b"\xff\xd8 snapshot \xff\xd9" * 50, kind="snapshot")
    queue = tmp_path / "uploads.db"
    closed_port = f"http://127.0.0.1:{free_tcp_port()}"  # nobody listens: the hub is unreachable
    async with uploading(hub.uploader(queue, url=closed_port)) as first:
        first.submit("n-3", item)
        await wait_until(lambda: any(u.attempts >= 2 for u in first.pending.values()), 10, "failed attempts")
    assert stored(hub, "n-3", item.sha256) is None
    async with uploading(hub.uploader(queue)) as second:  # the edge again, with nothing submitted
        await wait_until(lambda: second.uploaded == 1, 15, "the pending upload done after the restart")
    assert stored(hub, "n-3", item.sha256).complete


def test_a_site_uploads_only_for_its_own_escalations_and_police_users_upload_nothing(hub: Hub, tmp_path: Path) -> None:
    data = b"north's clip" * 100
    sha = hashlib.sha256(data).hexdigest()
    params, headers = {"camera": "cam-gate", "kind": "clip"}, {"Content-Type": "video/mp4"}
    with hub.client(token=hub.tokens[NORTH]) as north:
        assert north.put(f"/api/evidence/s-1/{sha}", params=params, content=data, headers=headers).status_code == 404
        assert north.get(f"/api/evidence/s-1/{sha}/status").status_code == 404
        assert north.put(f"/api/evidence/n-9/{sha}", params=params, content=data, headers=headers).status_code == 404  # unknown
        assert north.put(f"/api/evidence/n-4/{sha}", params=params, content=data, headers={"Content-Type": "text/html"}).status_code == 415
        assert north.get("/api/incidents").json()["items"] == []  # a site account reads nothing of the police's
        assert north.post("/api/incidents/n-4/commands", json={"command": "acknowledge"}).status_code in (403, 404)
    with hub.client("disp") as dispatcher:
        assert dispatcher.put(f"/api/evidence/n-4/{sha}", params=params, content=data, headers=headers).status_code == 403
    assert stored(hub, "s-1", sha) is None and stored(hub, "n-4", sha) is None


def test_an_upload_past_what_the_hub_holds_is_told_where_to_continue(hub: Hub) -> None:
    data = b"0123456789" * 100
    sha = hashlib.sha256(data).hexdigest()
    where = f"/api/evidence/n-5/{sha}"
    params = {"camera": "cam-gate", "kind": "clip"}
    with hub.client(token=hub.tokens[NORTH]) as site:
        def put(start: int, end: int) -> httpx.Response:
            return site.put(where, params=params, content=data[start:end + 1], headers={"Content-Type": "video/mp4", "Content-Range": f"bytes {start}-{end}/{len(data)}"})

        assert put(0, 399).status_code == 202
        gap = put(600, 999)
        assert gap.status_code == 409 and gap.json()["received"] == 400
        assert put(200, 699).status_code == 202  # overlapping what it has: the same bytes at the same offsets
        assert site.get(f"{where}/status").json()["received"] == 700
        done = put(700, 999)
        assert done.status_code == 200 and done.json()["complete"] is True
        assert put(0, 999).json()["complete"] is True  # again: nothing more to do
        too_big = site.put(f"/api/evidence/n-5/{'0' * 64}", params=params, content=b"x", headers={"Content-Type": "video/mp4", "Content-Range": f"bytes 0-0/{10**12}"})
        assert too_big.status_code == 413


def test_incident_detail_lists_each_evidence_item_with_its_url_and_whether_it_is_uploaded(hub: Hub, tmp_path: Path) -> None:
    clip_data, snap_data = b"clip of n-6" * 100, b"snapshot of n-6" * 10
    clip_item, snap_item = evidence_file(tmp_path / "c.mp4", clip_data), evidence_file(tmp_path / "s.jpg", snap_data, kind="snapshot")
    commit(hub.engine, [rev(NORTH, "n-6", 2, at=T0 + timedelta(seconds=5), evidence=[snap_item, clip_item])], now=T0)
    with hub.client(token=hub.tokens[NORTH]) as site:
        answer = site.put(f"/api/evidence/n-6/{snap_item.sha256}", params={"camera": "cam-gate", "kind": "snapshot"}, content=snap_data,
                          headers={"Content-Type": "image/jpeg"})
        assert answer.status_code == 200
    with hub.client("north_chief") as police:
        items = police.get("/api/incidents/n-6").json()["evidence"]
    assert [(i["kind"], i["url"], i["uploaded"]) for i in items] == [
        ("snapshot", f"/api/incidents/n-6/evidence/{snap_item.sha256}", True),
        ("clip", f"/api/incidents/n-6/evidence/{clip_item.sha256}", False),
    ]


def test_site_accounts_speak_for_one_site_and_have_no_password(hub: Hub) -> None:
    accounts = Accounts(hub.engine, hasher=FAST_HASHER)
    with pytest.raises(AccountError, match="needs --site"):
        accounts.add_user("edge-x", Role.SITE)
    with pytest.raises(AccountError, match="API tokens only"):
        accounts.add_user("edge-x", Role.SITE, site=NORTH, password=PASSWORD)
    with pytest.raises(AccountError, match="only site accounts"):
        accounts.add_user("desk-x", Role.DISPATCHER, site=NORTH)
    assert next(u for u in accounts.users() if u.name == f"edge-{NORTH}").site == NORTH
    with hub.client() as anonymous:
        assert anonymous.post("/api/login", json={"name": f"edge-{NORTH}", "password": PASSWORD}).status_code == 401


# --- a link that drops mid-upload ---------------------------------------------------------------------------------------


@dataclass
class Proxy:
    url: str
    requests: list[bytearray]  # what each connection sent, client to server (so far)


@asynccontextmanager
async def cutting_proxy(target: str, cut_after: int) -> AsyncIterator[Proxy]:
    """A TCP proxy to `target` that drops its first connection after `cut_after` bytes from the client (a link going down)."""
    host, port = target.removeprefix("http://").split(":")
    proxy = Proxy("", [])

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray | None, limit: int | None) -> None:
        try:
            while data := await reader.read(65536):
                if record is not None:
                    data = data[: limit - len(record)] if limit is not None else data
                    record += data
                writer.write(data)
                await writer.drain()
                if limit is not None and record is not None and len(record) >= limit:
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def serve(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        record = bytearray()
        limit = cut_after if not proxy.requests else None
        proxy.requests.append(record)
        server_reader, server_writer = await asyncio.open_connection(host, int(port))
        upstream = asyncio.create_task(pipe(client_reader, server_writer, record, limit))
        downstream = asyncio.create_task(pipe(server_reader, client_writer, None, None))
        await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
        if limit is not None:
            downstream.cancel()  # the link is gone both ways
            client_writer.close()
        await asyncio.gather(upstream, downstream, return_exceptions=True)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    proxy.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield proxy
    finally:
        server.close()
        await server.wait_closed()
