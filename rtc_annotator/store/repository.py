"""The store: one async SQLAlchemy engine over SQLite or PostgreSQL, and its repository API.

``Store.open(url)`` brings the schema to the newest Alembic revision on both dialects (on
PostgreSQL under an advisory lock, so several processes may open it at once), so a new SQLite
file or an empty PostgreSQL database is ready after ``open``.

Every write of artifacts goes through :meth:`Store.ingest`: it validates the whole batch first,
then writes it in one transaction, skipping artifact ids already stored, and updates the
projections (``run_summaries``, ``text_segments`` + full-text index, ``object_labels``,
``scene_ranges``) in the same transaction.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from rtc_annotator.artifacts.envelope import ArtifactEnvelope
from rtc_annotator.artifacts.schemas import SchemaError, registry
from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.logs import get_logger
from rtc_annotator.store import migrate, pg_write
from rtc_annotator.store.batch import (
    ENVELOPE_FIELDS,
    Prepared,
    prepare_batch,
    sqlite_write,
)
from rtc_annotator.store.models import (
    Artifact,
    ArtifactSelection,
    Asset,
    ObjectLabel,
    Run,
    RunSummary,
    SceneRange,
    TextSegment,
)
from rtc_annotator.store.selection import Candidate, Selection, SelectionError, resolve

log = get_logger(__name__)

RUN_STATUSES = ("queued", "running", "completed", "failed", "cancelled")
ASSET_ID_RE = re.compile(r"^[0-9a-f]{64}$")
INGEST_THREAD_MIN = 256  # batches at least this large are validated in a worker thread
CONNECT_TIMEOUT_S = 10.0  # PostgreSQL: a server silent this long on connect is an error
PG_CHUNK = 512  # PostgreSQL: a batch is validated and written in chunks of at most this many
PG_FIRST_CHUNK = 128  # ... starting with this many, doubling: the server starts work early
PREPARE_YIELD_EVERY = 16  # a validating thread lets the event loop run this often (envelopes)


artifacts_t: sa.Table = Artifact.__table__  # type: ignore[assignment]
assets_t: sa.Table = Asset.__table__  # type: ignore[assignment]
runs_t: sa.Table = Run.__table__  # type: ignore[assignment]
selections_t: sa.Table = ArtifactSelection.__table__  # type: ignore[assignment]
summaries_t: sa.Table = RunSummary.__table__  # type: ignore[assignment]
text_t: sa.Table = TextSegment.__table__  # type: ignore[assignment]
objects_t: sa.Table = ObjectLabel.__table__  # type: ignore[assignment]
scenes_t: sa.Table = SceneRange.__table__  # type: ignore[assignment]


class StoreError(RtcAnnotatorError):
    """The database failed or refused an operation."""

    code = "STORE_ERROR"
    default_hint = "check the [database] url and that the database is reachable"


class NotFound(RtcAnnotatorError):
    """A video, run or artifact does not exist in the store."""

    code = "NOT_FOUND"


def normalise_url(url: str) -> str:
    """Accept ``sqlite://`` and ``postgresql://`` as short forms of the async drivers."""
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://"):]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://"):]
    if url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url[len("postgres://"):]
    return url


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def check_asset_id(asset_id: str) -> str:
    if not ASSET_ID_RE.match(asset_id):
        raise NotFound(
            f"{asset_id[:80]!r} is not an asset id",
            hint="an asset id is the sha256 hex of the video bytes (64 lowercase hex digits)",
        )
    return asset_id


def envelope_from_row(row: Any) -> ArtifactEnvelope:
    """Build an envelope from a stored row (already validated when it was written)."""
    data = {name: getattr(row, name) for name in ENVELOPE_FIELDS}
    data["created_at"] = utc(data["created_at"])
    return ArtifactEnvelope.model_construct(**data)


class Store:
    """Repository over the store's database. Create with :meth:`open`, end with :meth:`close`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    # -- lifecycle -------------------------------------------------------------------------
    @classmethod
    async def open(cls, url: str, *, upgrade: bool = True,
                   connect_timeout: float = CONNECT_TIMEOUT_S) -> Store:
        """Open the store at ``url`` (and bring its schema up to date unless ``upgrade`` is
        false). PostgreSQL: a server that does not answer within ``connect_timeout`` seconds
        is a :class:`StoreError`, for every connection the store opens."""
        url = normalise_url(url)
        try:
            parsed = make_url(url)
        except Exception as exc:
            raise StoreError(f"cannot read database url {url!r}: {exc}") from None
        if parsed.get_backend_name() not in ("sqlite", "postgresql"):
            raise StoreError(f"unsupported database {parsed.get_backend_name()!r}",
                             hint="use sqlite+aiosqlite:///FILE or postgresql+asyncpg://...")
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                await asyncio.to_thread(_make_parent, parsed.database)
            engine = create_async_engine(url)
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            engine = create_async_engine(url, pool_size=10, max_overflow=10,
                                         connect_args={"timeout": connect_timeout})
        store = cls(engine)
        try:
            if upgrade:
                await store.upgrade()
        except BaseException:
            await engine.dispose()
            raise
        return store

    async def upgrade(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        try:
            async with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    await conn.execute(sa.text("SELECT pg_advisory_xact_lock(7235519)"))
                current = await conn.run_sync(migrate.current_revision)
                if current != migrate.head_revision():
                    log.info("migrating store from=%s to=head", current)
                    await conn.run_sync(migrate.upgrade)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open or migrate the store: {_short(exc)}") from None
        except OSError as exc:
            raise StoreError(f"cannot reach the database: {_os_error(exc)}") from None

    async def close(self) -> None:
        await self.engine.dispose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _insert(self, table: sa.Table) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    # -- assets and runs -------------------------------------------------------------------
    async def upsert_asset(
        self,
        asset_id: str,
        filename: str,
        size_bytes: int,
        duration_ms: int | None = None,
        fps: float | None = None,
        variable_frame_rate: bool | None = None,
    ) -> None:
        check_asset_id(asset_id)
        values: dict[str, Any] = {"filename": filename, "size_bytes": size_bytes}
        for key, val in (("duration_ms", duration_ms), ("fps", fps),
                         ("variable_frame_rate", variable_frame_rate)):
            if val is not None:
                values[key] = val
        stmt = self._insert(assets_t).values(
            asset_id=asset_id, created_at=datetime.now(UTC), **values
        )
        stmt = stmt.on_conflict_do_update(index_elements=["asset_id"], set_=values)
        async with self._begin() as conn:
            await conn.execute(stmt)

    async def start_run(
        self, run_id: str, asset_id: str, pipeline: str, model_profile: str, worker: str,
        config_hash: str, status: str = "running",
    ) -> None:
        """Record a run (status ``running`` unless given); restarting a run id resets it."""
        _check_status(status)
        check_asset_id(asset_id)
        values = dict(asset_id=asset_id, pipeline=pipeline, model_profile=model_profile,
                      worker=worker, config_hash=config_hash, status=status,
                      started_at=datetime.now(UTC), finished_at=None, error=None)
        stmt = self._insert(runs_t).values(run_id=run_id, **values)
        stmt = stmt.on_conflict_do_update(index_elements=["run_id"], set_=values)
        async with self._begin() as conn:
            await self._ensure_assets(conn, [asset_id])
            await conn.execute(stmt)

    async def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        _check_status(status)
        finished = datetime.now(UTC) if status in ("completed", "failed", "cancelled") else None
        async with self._begin() as conn:
            res = await conn.execute(
                runs_t.update().where(runs_t.c.run_id == run_id)
                .values(status=status, error=error, finished_at=finished)
            )
            if res.rowcount == 0:
                raise NotFound(f"run {run_id!r} was never started",
                               hint="call start_run before finish_run")

    async def get_run(self, run_id: str) -> dict[str, Any]:
        async with self._connect() as conn:
            row = (await conn.execute(sa.select(runs_t).where(runs_t.c.run_id == run_id))).first()
        if row is None:
            raise NotFound(f"no run {run_id!r}")
        return _run_dict(row)

    async def runs(self, asset_id: str) -> list[dict[str, Any]]:
        async with self._connect() as conn:
            rows = (await conn.execute(
                sa.select(runs_t).where(runs_t.c.asset_id == asset_id)
                .order_by(runs_t.c.started_at, runs_t.c.run_id)
            )).all()
        return [_run_dict(r) for r in rows]

    async def list_assets(self) -> list[dict[str, Any]]:
        async with self._connect() as conn:
            assets = (await conn.execute(sa.select(assets_t).order_by(assets_t.c.created_at,
                                                                     assets_t.c.asset_id))).all()
            counts = (await conn.execute(
                sa.select(summaries_t.c.asset_id, summaries_t.c.artifact_type,
                          sa.func.sum(summaries_t.c.artifact_count))
                .group_by(summaries_t.c.asset_id, summaries_t.c.artifact_type)
            )).all()
        by_asset: dict[str, dict[str, int]] = {}
        for asset_id, atype, n in counts:
            by_asset.setdefault(asset_id, {})[atype] = int(n)
        return [_asset_dict(a, by_asset.get(a.asset_id, {})) for a in assets]

    async def get_asset(self, asset_id: str) -> dict[str, Any]:
        check_asset_id(asset_id)
        async with self._connect() as conn:
            row = (await conn.execute(
                sa.select(assets_t).where(assets_t.c.asset_id == asset_id))).first()
            if row is None:
                raise NotFound(f"no video with asset id {asset_id}",
                               hint="list videos with `rtc-annotator results` or GET /v1/videos")
            counts = (await conn.execute(
                sa.select(summaries_t.c.artifact_type, sa.func.sum(summaries_t.c.artifact_count))
                .where(summaries_t.c.asset_id == asset_id)
                .group_by(summaries_t.c.artifact_type)
            )).all()
        return _asset_dict(row, {t: int(n) for t, n in counts})

    # -- ingest ----------------------------------------------------------------------------
    async def ingest(self, envelopes: Sequence[ArtifactEnvelope | dict[str, Any]]) -> int:
        """Validate all, write all in one transaction; return how many were new.

        Idempotent on ``artifact_id``: envelopes already stored (or repeated in the batch) are
        skipped. Any invalid envelope raises :class:`SchemaError` and the transaction is rolled
        back, so nothing of the batch is written.

        A batch of :data:`INGEST_THREAD_MIN` or more is validated in a worker thread, so the
        event loop stays responsive. SQLite: the whole batch is validated, then written on
        the driver's thread (its writer needs the GIL for every row, so overlapping the two
        would only slow it down). PostgreSQL: the batch is validated and written in chunks of
        :data:`PG_CHUNK` inside the one transaction; while the server writes one chunk, the
        next is validated.
        """
        if not envelopes:
            return 0
        if self.dialect == "sqlite":
            if len(envelopes) >= INGEST_THREAD_MIN:
                prep = await asyncio.to_thread(prepare_batch, envelopes, True)
            else:
                prep = prepare_batch(envelopes, True)
            if not prep.ids:
                return 0
            async with self._begin() as conn:
                fresh = await self._sqlite_ingest(conn, prep)
            log.debug("ingested batch=%d new=%d", len(prep.ids), fresh)
            return fresh
        return await self._pg_ingest(envelopes)

    async def _sqlite_ingest(self, conn: AsyncConnection, prep: Prepared) -> int:
        """SQLite: the whole batch in one call on the driver's thread, raw ``executemany``."""
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection  # aiosqlite.Connection in SQLAlchemy's transaction
        try:
            # aiosqlite runs the function on its own thread, where its sqlite3 connection lives
            fresh: int = await driver._execute(sqlite_write, driver._conn, prep)
        except sqlite3.Error as exc:
            log.warning("database error: %s", _short(exc))
            raise StoreError(f"database error: {_short(exc)}") from None
        return fresh

    async def _ensure_assets(self, conn: AsyncConnection, asset_ids: Iterable[str]) -> None:
        now = datetime.now(UTC)
        rows = [{"asset_id": a, "filename": "", "created_at": now} for a in sorted(asset_ids)]
        if rows:
            await conn.execute(
                self._insert(assets_t).on_conflict_do_nothing(index_elements=["asset_id"]), rows
            )

    async def _pg_ingest(self, envelopes: Sequence[ArtifactEnvelope | dict[str, Any]]) -> int:
        """PostgreSQL: validate and write ``envelopes`` in chunks (:func:`pg_chunks`), in one
        transaction, through :mod:`rtc_annotator.store.pg_write`. The fast path copies the
        rows in; if a chunk meets ids stored already (part of the batch was stored before, or
        a concurrent writer stored it meanwhile), the transaction is rolled back and the batch
        written again through the conflict-safe path. While the server writes one chunk, the
        next is validated in a worker thread."""
        try:
            try:
                return await self._pg_ingest_pass(envelopes, fast=True)
            except pg_write.Conflict as exc:
                log.info("ingest met artifacts stored already (by an earlier batch or a "
                         "concurrent writer), writing the batch again with ON CONFLICT: %s",
                         _short(exc))
                return await self._pg_ingest_pass(envelopes, fast=False)
        except Exception as exc:
            if type(exc).__module__.startswith("asyncpg"):
                log.warning("database error: %s", _short(exc))
                raise StoreError(f"database error: {_short(exc)}") from None
            raise

    async def _pg_ingest_pass(self, envelopes: Sequence[ArtifactEnvelope | dict[str, Any]],
                              fast: bool) -> int:
        seen: set[str] = set()
        threaded = len(envelopes) >= INGEST_THREAD_MIN
        bounds = pg_chunks(len(envelopes))

        def prepare_sync(start: int, stop: int, yield_every: int) -> Prepared:
            prep = prepare_batch(envelopes[start:stop], False, seen, start, yield_every)
            prep.artifact_rows.sort()  # copied in id order (see pg_write.copy_chunk)
            return prep

        async def prepare(start: int, stop: int) -> Prepared:
            if threaded:  # yielding the GIL now and then lets the writer's replies in
                return await asyncio.to_thread(prepare_sync, start, stop, PREPARE_YIELD_EVERY)
            return prepare_sync(start, stop, 0)

        async def write(apg: Any, prep: Prepared) -> Prepared | int:
            if fast:
                return await pg_write.copy_chunk(apg, prep)
            await pg_write.stage(apg, pg_write.stage_rows(prep))
            return await pg_write.move(apg, prep)

        fresh = 0
        written: list[Prepared] = []
        # the first chunk is validated while the transaction begins
        preparing = asyncio.ensure_future(prepare(*bounds[0]))
        try:
            async with self._begin() as conn:
                # SQLAlchemy opens its transaction on the asyncpg connection lazily, with its
                # first statement: without this the raw statements below would each commit
                await conn.exec_driver_sql("SELECT 1")
                apg = await _asyncpg(conn)
                prep = await preparing
                if fast and prep.ids and await pg_write.replayed(apg, prep.ids):
                    log.debug("ingest batch begins with stored artifacts: conflict-safe path")
                    fast = False
                if not fast:
                    await pg_write.ensure_stage(apg)
                for index in range(len(bounds)):
                    writing = asyncio.ensure_future(write(apg, prep)) if prep.ids else None
                    try:
                        if writing is not None:
                            for _ in range(3):  # the first statement goes out before we go on
                                await asyncio.sleep(0)
                        if index + 1 < len(bounds):
                            prep = await prepare(*bounds[index + 1])
                    except BaseException:
                        if writing is not None:  # let the writer stop, then roll back
                            await asyncio.wait([writing])
                            if not writing.cancelled():
                                writing.exception()
                        raise
                    if writing is not None:
                        done = await writing
                        if isinstance(done, Prepared):
                            written.append(done)
                            fresh += len(done.ids)
                        else:
                            fresh += done
                if fast:
                    await pg_write.add_summaries(apg, written)
        finally:
            if not preparing.done():  # the transaction could not begin: let it finish
                await asyncio.wait([preparing])
            if not preparing.cancelled():
                preparing.exception()  # raised above already, or the begin's error was
        log.debug("ingested batch=%d new=%d fast=%s", len(seen), fresh, fast)
        return fresh

    # -- selections ------------------------------------------------------------------------
    async def candidates(self, asset_id: str, artifact_type: str, *,
                         conn: AsyncConnection | None = None) -> list[Candidate]:
        """Runs with artifacts of the type (``conn``: reuse an open connection)."""
        if conn is None:
            async with self._connect() as own:
                return await self.candidates(asset_id, artifact_type, conn=own)
        rows = (await conn.execute(
            sa.select(summaries_t.c.run_id, summaries_t.c.model_profile,
                      summaries_t.c.last_created_at, runs_t.c.status)
            .select_from(summaries_t.outerjoin(runs_t, runs_t.c.run_id == summaries_t.c.run_id))
            .where(summaries_t.c.asset_id == asset_id,
                   summaries_t.c.artifact_type == artifact_type)
        )).all()
        return [Candidate(r[0], r[1], utc(r[2]), r[3]) for r in rows]

    async def get_selection(self, asset_id: str, artifact_type: str, *,
                            conn: AsyncConnection | None = None) -> Selection:
        """The stored selection policy (``conn``: reuse an open connection)."""
        if conn is None:
            async with self._connect() as own:
                return await self.get_selection(asset_id, artifact_type, conn=own)
        row = (await conn.execute(sa.select(selections_t).where(
            selections_t.c.asset_id == asset_id,
            selections_t.c.artifact_type == artifact_type))).first()
        if row is None:
            return Selection()
        return Selection(mode=row.mode, run_id=row.run_id, model_profile=row.model_profile)

    async def set_selection(self, asset_id: str, artifact_type: str,
                            selection: Selection) -> None:
        check_asset_id(asset_id)
        if artifact_type not in {t for t, _ in registry.known()}:
            raise SelectionError(f"unknown artifact type {artifact_type!r}",
                                 hint="types: " + ", ".join(sorted({t for t, _ in
                                                                     registry.known()})))
        values = {"mode": selection.mode, "run_id": selection.run_id,
                  "model_profile": selection.model_profile, "updated_at": datetime.now(UTC)}
        stmt = self._insert(selections_t).values(asset_id=asset_id, artifact_type=artifact_type,
                                                 **values)
        stmt = stmt.on_conflict_do_update(index_elements=["asset_id", "artifact_type"],
                                          set_=values)
        async with self._begin() as conn:
            await conn.execute(stmt)

    async def selected_run(self, asset_id: str, artifact_type: str,
                           selection: Selection | None = None, *,
                           conn: AsyncConnection | None = None) -> str | None:
        """The run whose artifacts count, per ``selection`` or the stored/default policy.

        ``conn`` reuses an open connection (jump and find run all their queries on one).
        """
        if conn is None:
            async with self._connect() as own:
                return await self.selected_run(asset_id, artifact_type, selection, conn=own)
        if selection is None:
            selection = await self.get_selection(asset_id, artifact_type, conn=conn)
        if selection.mode == "pinned":
            return selection.run_id
        return resolve(selection, await self.candidates(asset_id, artifact_type, conn=conn))

    async def artifact_types(self, asset_id: str) -> list[str]:
        async with self._connect() as conn:
            rows = (await conn.execute(
                sa.select(summaries_t.c.artifact_type).distinct()
                .where(summaries_t.c.asset_id == asset_id)
                .order_by(summaries_t.c.artifact_type))).scalars().all()
        return list(rows)

    async def profiles(self, asset_id: str, artifact_type: str | None = None) -> list[str]:
        q = sa.select(summaries_t.c.model_profile).distinct().where(
            summaries_t.c.asset_id == asset_id)
        if artifact_type:
            q = q.where(summaries_t.c.artifact_type == artifact_type)
        async with self._connect() as conn:
            return sorted((await conn.execute(q)).scalars().all())

    # -- artifact queries ------------------------------------------------------------------
    async def _run_filter(self, asset_id: str, artifact_type: str | None,
                          selection: Selection | None) -> sa.ColumnElement[bool]:
        types = [artifact_type] if artifact_type else await self.artifact_types(asset_id)
        parts = []
        for t in types:
            run = await self.selected_run(asset_id, t, selection)
            if run is not None:
                parts.append(sa.and_(artifacts_t.c.artifact_type == t,
                                     artifacts_t.c.run_id == run))
        return sa.or_(*parts) if parts else sa.false()

    async def artifacts(
        self,
        asset_id: str,
        artifact_type: str | None = None,
        *,
        from_ms: int | None = None,
        to_ms: int | None = None,
        run_id: str | None = None,
        model_profile: str | None = None,
        selection: Selection | None = None,
        apply_selection: bool = True,
        limit: int = 1000,
        after: tuple[int, int, str] | None = None,
    ) -> list[ArtifactEnvelope]:
        """Artifacts of a video overlapping ``[from_ms, to_ms]``, ordered by (start, end, id).

        With ``run_id`` only that run; otherwise, unless ``apply_selection`` is false, only the
        selected run per type. ``after`` is a keyset cursor (start, end, id) for paging.
        """
        c = artifacts_t.c
        q = sa.select(artifacts_t).where(c.asset_id == asset_id)
        if artifact_type:
            q = q.where(c.artifact_type == artifact_type)
        if run_id is not None:
            q = q.where(c.run_id == run_id)
        elif apply_selection:
            q = q.where(await self._run_filter(asset_id, artifact_type, selection))
        if model_profile:
            q = q.where(c.model_profile == model_profile)
        if from_ms is not None:
            q = q.where(c.span_end_ms >= from_ms)
        if to_ms is not None:
            q = q.where(c.span_start_ms <= to_ms)
        if after is not None:
            q = q.where(sa.tuple_(c.span_start_ms, c.span_end_ms, c.artifact_id)
                        > sa.tuple_(*after))
        q = q.order_by(c.span_start_ms, c.span_end_ms, c.artifact_id).limit(limit)
        async with self._connect() as conn:
            rows = (await conn.execute(q)).all()
        return [envelope_from_row(r) for r in rows]

    async def iter_artifacts(self, asset_id: str, artifact_type: str | None = None, *,
                             page: int = 1000, **kw: Any) -> AsyncIterator[ArtifactEnvelope]:
        """All matching artifacts, fetched a page at a time (for exports)."""
        after: tuple[int, int, str] | None = None
        while True:
            chunk = await self.artifacts(asset_id, artifact_type, limit=page, after=after, **kw)
            for env in chunk:
                yield env
            if len(chunk) < page:
                return
            last = chunk[-1]
            after = (last.span_start_ms, last.span_end_ms, last.artifact_id)

    async def get_artifact(self, artifact_id: str) -> ArtifactEnvelope:
        async with self._connect() as conn:
            row = (await conn.execute(
                sa.select(artifacts_t).where(artifacts_t.c.artifact_id == artifact_id))).first()
        if row is None:
            raise NotFound(f"no artifact {artifact_id[:80]!r}")
        return envelope_from_row(row)

    async def count_artifacts(self, asset_id: str | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(artifacts_t)
        if asset_id:
            q = q.where(artifacts_t.c.asset_id == asset_id)
        async with self._connect() as conn:
            return int((await conn.execute(q)).scalar_one())

    # -- connections with errors mapped --------------------------------------------------
    def _begin(self) -> _Conn:
        return _Conn(self.engine, begin=True)

    def _connect(self) -> _Conn:
        return _Conn(self.engine, begin=False)


class _Conn:
    """``async with``: a connection (optionally in a transaction); DB errors -> StoreError."""

    def __init__(self, engine: AsyncEngine, begin: bool) -> None:
        self._cm = engine.begin() if begin else engine.connect()

    async def __aenter__(self) -> AsyncConnection:
        try:
            return await self._cm.__aenter__()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot reach the store: {_short(exc)}") from None
        except OSError as exc:
            raise StoreError(f"cannot reach the database: {_os_error(exc)}") from None

    async def __aexit__(self, et: Any, ev: Any, tb: Any) -> None:
        try:
            await self._cm.__aexit__(et, ev, tb)
        except SQLAlchemyError as exc:
            raise StoreError(f"database error: {_short(exc)}") from None
        if isinstance(ev, SQLAlchemyError):
            log.warning("database error: %s", _short(ev))
            raise StoreError(f"database error: {_short(ev)}") from None


def _make_parent(database: str) -> None:
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def pg_chunks(n: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the chunks a PostgreSQL ingest of ``n`` envelopes is written in:
    :data:`PG_FIRST_CHUNK` first, doubling up to :data:`PG_CHUNK`. The first chunk is
    validated before the server has anything to do, so it is small."""
    out: list[tuple[int, int]] = []
    start, size = 0, PG_FIRST_CHUNK
    while start < n or not out:
        out.append((start, min(start + size, n)))
        start, size = start + size, min(size * 2, PG_CHUNK)
    return out


async def _asyncpg(conn: AsyncConnection) -> Any:
    """The asyncpg connection under ``conn`` (inside the same transaction)."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


def _os_error(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return ("the server did not answer in time (are the host and port right? is a "
                "firewall dropping the connection?)")
    return str(exc) or type(exc).__name__


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).splitlines()
    return text[0][:300] if text else type(exc).__name__


def _check_status(status: str) -> None:
    if status not in RUN_STATUSES:
        raise StoreError(f"unknown run status {status!r}", hint="one of " + ", ".join(RUN_STATUSES))


def _run_dict(row: Any) -> dict[str, Any]:
    d = dict(row._mapping)
    for key in ("started_at", "finished_at"):
        if d[key] is not None:
            d[key] = utc(d[key]).isoformat()
    return d


def _asset_dict(row: Any, counts: dict[str, int]) -> dict[str, Any]:
    d = dict(row._mapping)
    d["created_at"] = utc(d["created_at"]).isoformat()
    d["artifact_counts"] = counts
    return d


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA cache_size=-65536")  # 64 MiB: the random-id indexes outgrow the default
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.execute("PRAGMA wal_autocheckpoint=16384")
    cur.close()


__all__ = ["NotFound", "SchemaError", "Store", "StoreError", "normalise_url"]
