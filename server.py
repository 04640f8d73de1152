"""Entry point: python server.py [--config PATH] [--port N].

Loads the config once, opens Redis, MySQL, the HTTP client and the executor, serves until
SIGINT/SIGTERM, lets in-flight requests finish (bounded wait) and closes everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import tornado.httpserver
import tornado.netutil
import uvloop
from tornado.curl_httpclient import CurlAsyncHTTPClient

from handlers.application import SmsRegApplication
from handlers.routes import build_application
from services.accounts import registered
from services.accounts.consent import ConsentPolicy
from services.accounts.deletion import DeletionService
from services.accounts.devices import DeviceService
from services.accounts.login_throttle import LoginFailureRate, LoginThrottle
from services.accounts.mobile_change import MobileChangeService
from services.accounts.password_change import PasswordChangeService
from services.accounts.passwords import HASHING_BUSY, PASSWORD_SCHEMES, PasswordHasher
from services.accounts.reauth import Reauthentication
from services.accounts.service import AccountService
from services.accounts.sessions import SessionStore
from services.accounts.users import UserRepository
from services.captcha.pow import ProofOfWork
from services.captcha.service import CaptchaService
from services.codes.admission import Gate, SendGate
from services.codes.costs import SmsPricing
from services.codes.fraud import FraudGuard
from services.codes.receipts import ReceiptStore
from services.codes.sms import SmsCodeService
from services.composition import Services
from services.config import Config, ConfigError, listen_hosts, load_config
from services.errors import STORAGE_ERRORS
from services.hostapp import setup as hostapp
from services.logs import configure_logging
from services.meiduo_pages import load_meiduo_pages
from services.metrics import Metrics
from services.ops.console import OpsConsole
from services.ops.history import SendHistory
from services.processes import (
    STARTUP_FAILED,
    prepare_multiprocess_metrics,
    settle_garbage_collector,
    supervise,
)
from services.providers.configured import configured_sender
from services.providers.ronglian import RonglianClient
from services.store.db import SCHEMA_PATH, Database
from services.store.limits import RateLimiter
from services.store.redisclient import RedisClient, redis_client
from services.tokens.service import open_tokens

ROOT = Path(__file__).resolve().parent
DEFAULT_CONFIG = ROOT / "config.yml"
# Connections the kernel may queue before they are accepted (capped by net.core.somaxconn).
# Tornado's default of 128 drops the SYNs of a burst of new clients while the loop is busy,
# and a dropped SYN is retried only after 1 s, 3 s, 7 s: a wait that admission control
# (services/codes/admission.py), which answers at once, could not shorten.
LISTEN_BACKLOG = 4096
log = logging.getLogger("smsreg")


# Start-up failures reported as one line (unreachable Redis/MySQL, a port in use).
STARTUP_ERRORS: tuple[type[BaseException], ...] = (OSError, *STORAGE_ERRORS)


@dataclass(frozen=True)
class Clients:
    """What the services are built on: opened once per process, closed by the exit stack."""

    password_threads: ThreadPoolExecutor
    redis: RedisClient
    db: Database
    http: CurlAsyncHTTPClient
    metrics: Metrics
    limiter: RateLimiter
    pricing: SmsPricing
    history: SendHistory  # the console's per-minute counts, flushed in the background


@contextlib.asynccontextmanager
async def open_services(config: Config) -> AsyncIterator[Services]:
    """Open every client the services need and close them all on exit."""
    async with contextlib.AsyncExitStack() as stack:
        clients = await open_clients(config, stack)
        table = await hostapp.user_table(config, clients.db)
        mobiles = registered.started(config, clients.redis, clients.db, table, stack)
        users = UserRepository(clients.db, table, mobiles)
        # One Ronglian client per process: the provider's sends and calls, and the notices.
        ronglian = RonglianClient(clients.http, config.ronglian, clients.metrics)
        sender = configured_sender(
            config, clients.http, ronglian, clients.metrics, clients.pricing, clients.history
        )
        captchas = start_captchas(config, clients, stack)
        fraud = fraud_guard(config, clients)
        receipts = receipt_store(config, clients)
        gate = start_send_gate(config, clients.metrics, stack)
        sms = SmsCodeService(
            clients.redis,
            captchas,
            users,
            sender,
            clients.limiter,
            receipts,
            ronglian,  # the mobile-changed notice
            fraud,
            sms=config.sms,
            limits=config.limits,
            voice=config.voice,
            code_hmac_key=config.security.code_hmac_key,
            max_code_attempts=config.accounts.max_code_attempts,
            gate=gate,
            login_signs_up=config.accounts.sms_login_signs_up,
        )
        sessions = SessionStore(clients.redis, config.security.session_ttl)
        host = await hostapp.open_host_bridge(config, users, sessions, stack)
        accounts = account_service(config, clients, users, sms, captchas, sessions)
        reauth = Reauthentication(accounts.hasher, accounts.throttle, config.accounts)
        mobile_changes = MobileChangeService(users, reauth, sms, sessions)
        templates = config.families.meiduo_templates
        meiduo_pages = load_meiduo_pages(templates) if templates else None  # checked at start
        tokens = await stack.enter_async_context(open_tokens(config, clients.redis))
        yield Services(
            config,
            clients.redis,
            clients.db,
            captchas,
            users,
            sms,
            accounts,
            mobile_changes,
            sessions,
            clients.metrics,
            sender,
            receipts,
            fraud,
            meiduo_pages,
            tokens,
            clients.history,
            OpsConsole(config, clients.redis, fraud, sender, receipts, clients.history),
            accounts.consent,
            DeletionService(clients.db, users, reauth, sms, sessions, config.deletion),
            password_changes=PasswordChangeService(
                users, accounts.hasher, reauth, sessions, config.accounts
            ),
            devices=DeviceService(sessions, tokens),
            host=host,
        )


async def open_clients(config: Config, stack: contextlib.AsyncExitStack) -> Clients:
    """The thread pool, Redis, MySQL (schema applied), the HTTP client, metrics and limits."""
    # Password hashing and verification (argon2, Werkzeug, Django PBKDF2 release the GIL);
    # with captcha.render_processes 0 the CAPTCHA images and audio are drawn here too.
    password_threads = ThreadPoolExecutor(
        max_workers=config.server.executor_workers, thread_name_prefix="passwords"
    )
    stack.callback(password_threads.shutdown, wait=True, cancel_futures=True)
    redis = redis_client(config)
    stack.push_async_callback(redis.aclose)
    metrics = Metrics()
    db = await Database.connect(config.mysql, on_event=metrics.count_mysql_event)
    stack.push_async_callback(db.close)
    http = CurlAsyncHTTPClient(force_instance=True, max_clients=config.ronglian.max_clients)
    stack.callback(http.close)
    await db.apply_schema(hostapp.schema_for(config, SCHEMA_PATH.read_text(encoding="utf-8")))
    pricing = SmsPricing(
        config.costs,
        aliyun_sign=config.aliyun.sign_name,
        webotp_domain=config.sms.webotp_domain,
        ttl_minutes=max(1, config.sms.code_ttl // 60),
    )
    history = SendHistory(redis, config.ops.history_hours)
    history.start()
    stack.push_async_callback(history.close)
    return Clients(password_threads, redis, db, http, metrics, RateLimiter(redis), pricing, history)


def start_captchas(
    config: Config, clients: Clients, stack: contextlib.AsyncExitStack
) -> CaptchaService:
    """The CAPTCHA service, drawing ahead in its render processes (or in the thread pool)."""
    render_executor: Executor = clients.password_threads
    if config.captcha.render_processes:
        # forkserver, not fork: forking a process that runs threads can deadlock the child.
        render_executor = ProcessPoolExecutor(
            max_workers=config.captcha.render_processes,
            mp_context=multiprocessing.get_context("forkserver"),
        )
        stack.callback(render_executor.shutdown, wait=True, cancel_futures=True)
    captchas = CaptchaService(
        clients.redis,
        render_executor,
        clients.limiter,
        clients.metrics,
        config.captcha,
        config.limits,
    )
    captchas.start()
    stack.push_async_callback(captchas.close)
    return captchas


def fraud_guard(config: Config, clients: Clients) -> FraudGuard:
    """The fraud breaker, with its proof of work."""
    proof_of_work = ProofOfWork(clients.redis, config.fraud, config.security.code_hmac_key)
    return FraudGuard(
        clients.redis, config.fraud, pow_service=proof_of_work, metrics=clients.metrics
    )


def receipt_store(config: Config, clients: Clients) -> ReceiptStore:
    """Send records for as long as a code lives; the receipts' token and allowed sources."""
    receipts = config.receipts
    return ReceiptStore(
        clients.redis,
        config.sms.code_ttl,
        clients.metrics,
        receipts.callback_token,
        receipts.allowed_sources,
        pricing=clients.pricing,
        history=clients.history,
    )


def start_send_gate(config: Config, metrics: Metrics, stack: contextlib.AsyncExitStack) -> SendGate:
    """Admission: never more sends in flight than the provider's connections can carry,
    and fewer while the loop lags (services/codes/admission.py)."""
    admission = config.admission
    gate = SendGate(
        min(admission.max_sends_in_flight, config.ronglian.max_clients),
        admission.retry_after,
        floor=admission.min_sends_in_flight,
        max_loop_lag=admission.max_loop_lag,
        shed_delay=admission.shed_delay,
        paid_wait=admission.paid_wait,
        gauge=metrics.sends_in_flight,
        lag_gauge=metrics.loop_lag,
    )
    gate.start()
    stack.push_async_callback(gate.close)
    return gate


def account_service(
    config: Config,
    clients: Clients,
    users: UserRepository,
    sms: SmsCodeService,
    captchas: CaptchaService,
    sessions: SessionStore,
) -> AccountService:
    """Accounts: passwords hashed in the thread pool (at most accounts.max_hashes_in_flight
    at once per process, the rest refused at once, or, paid by an SMS code, waiting up to
    accounts.paid_hash_wait; 0: no bound), password logins throttled, and all of them asked
    for a CAPTCHA while failures everywhere spike."""
    bound = config.accounts.max_hashes_in_flight
    wait = config.accounts.paid_hash_wait
    hashing = Gate(bound, config.admission.retry_after, message=HASHING_BUSY, paid_wait=wait)
    hasher = PasswordHasher(
        clients.password_threads,
        hashing if bound else None,
        scheme=PASSWORD_SCHEMES[config.host_app.kind],
        werkzeug_iterations=config.host_app.werkzeug_iterations,
    )
    accounts = config.accounts
    rate = LoginFailureRate(
        clients.redis, accounts.login_global_captcha_after, accounts.login_global_window
    )
    throttle = LoginThrottle(clients.limiter, captchas, accounts, rate)
    return AccountService(
        users,
        hasher,
        sms,
        clients.limiter,
        throttle,
        sessions,
        config.accounts,
        config.limits,
        ConsentPolicy(config.consent),
    )


def make_http_server(app: SmsRegApplication, config: Config) -> tornado.httpserver.HTTPServer:
    """The HTTP server with the configured limits against slow and oversized requests."""
    return tornado.httpserver.HTTPServer(
        app,
        # Bodies up to max_request_size are read so the API can answer a clear JSON 413;
        # beyond it Tornado closes the connection without reading further.
        max_body_size=max(config.server.max_request_size, config.server.max_body_size),
        idle_connection_timeout=config.server.idle_connection_timeout,
        body_timeout=config.server.body_timeout,
    )


async def serve(config: Config, sockets: list[socket.socket], stop: asyncio.Event) -> None:
    """Serve on the bound sockets until stop is set, then drain and close."""
    async with open_services(config) as services:
        app = build_application(services)
        server = make_http_server(app, config)
        settle_garbage_collector()
        server.add_sockets(sockets)
        log.info("listening on http://%s:%s", config.server.host, config.server.port)
        await stop.wait()
        log.info("stopping: no new connections, waiting for %d in-flight requests", app.in_flight)
        server.stop()
        if not await app.wait_idle(config.server.shutdown_timeout):
            log.warning("drain deadline passed with %d requests in flight", app.in_flight)
        await asyncio.wait_for(server.close_all_connections(), config.server.shutdown_timeout)
    log.info("stopped")


async def run(config: Config, sockets: list[socket.socket]) -> int:
    """One worker: serve until SIGINT/SIGTERM; a start-up failure is one line, exit 1."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await serve(config, sockets, stop)
    except STARTUP_ERRORS as exc:
        # Unreachable Redis/MySQL at start: one line, not a traceback.
        # One write of the whole line: with several workers failing at once, lines written
        # in pieces (print writes the text and the newline separately) can interleave.
        sys.stderr.flush()
        os.write(sys.stderr.fileno(), f"startup failed: {exc}\n".encode())
        return STARTUP_FAILED
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config file")
    parser.add_argument("--port", type=int, help="listen port (overrides server.port)")
    parser.add_argument(
        "--processes", type=int, help="worker processes, 0 = one per core (server.processes)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Load the config, bind the port, then run one worker or fork several."""
    args = parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.port is not None:
        config = config.replace(server={"port": args.port})
    if args.processes is not None:
        config = config.replace(server={"processes": args.processes})
    configure_logging(config.logging.level, config.logging.format)
    problem = asyncio.run(hostapp.table_problem(config))  # before any worker starts
    if problem is not None:
        print(problem.line, file=sys.stderr)
        return problem.exit_code
    try:
        # Bound before forking, so every worker accepts on the same sockets.
        sockets = [
            sock
            for host in listen_hosts(config.server.host)
            for sock in tornado.netutil.bind_sockets(
                config.server.port, host, backlog=LISTEN_BACKLOG
            )
        ]
    except OSError as exc:
        print(f"startup failed: cannot listen on port {config.server.port}: {exc}", file=sys.stderr)
        return 1
    workers = config.server.processes or os.cpu_count() or 1
    # uvloop: a faster event loop in C, same asyncio API (Tornado runs on any asyncio loop).
    run_loop = uvloop.run if config.server.event_loop == "uvloop" else asyncio.run
    if workers == 1:
        return 1 if run_loop(run(config, sockets)) == STARTUP_FAILED else 0
    prepare_multiprocess_metrics()
    log.info("starting %d worker processes", workers)
    return supervise(workers, lambda: run_loop(run(config, sockets)))


if __name__ == "__main__":
    sys.exit(main())
