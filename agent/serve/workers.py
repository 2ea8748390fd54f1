"""`toolrec serve --workers N`: N server processes on one port, sharing sessions in Postgres.

uvicorn starts each worker as a fresh (spawned) process that builds its app from an import
string, so what the command line was given travels in the environment: the parent writes the
server's settings (TOOLREC_SERVE_*) and the agent's (TOOLREC_AGENT_*), and `app`, the factory
each worker calls, reads them back. Each worker opens its own toolbox and LLM, its own run
slots and its own rate buckets; the sessions, and the lock that keeps one session's turns
apart, are the database's.
"""

from __future__ import annotations

import json
import logging
import os

import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from pydantic_settings import BaseSettings
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from agent.runtime import AgentSpec
from agent.serve.app import ServerSettings, create_app

log = logging.getLogger("uvicorn.error")
FACTORY = "agent.serve.workers:app"
HEALTHCHECK_S = 60


def environment(settings: BaseSettings) -> dict[str, str | None]:
    """The settings as the environment variables that give them back (None: unset the variable)."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    variables: dict[str, str | None] = {}
    for name, value in settings:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list | dict):
            value = json.dumps(value)  # pydantic-settings reads complex fields as JSON
        variables[f"{prefix}{name}".upper()] = None if value is None else str(value)
    return variables


def export(*settings: BaseSettings) -> None:
    for each in settings:
        for name, value in environment(each).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def app() -> FastAPI:
    """The app of one worker, from the settings in its environment. A failure here would fail
    in every worker alike, so the worker exits as a failed start and uvicorn stops them all
    rather than restarting it."""
    try:
        settings = ServerSettings()
        _, factory = AgentSpec().shared()  # run comes from the environment
        return create_app(settings, factory)
    except Exception as exc:  # whatever it is, said once in the log
        log.error("the worker could not start: %s", exc)
        raise SystemExit(STARTUP_FAILURE) from exc


def serve_workers(settings: ServerSettings, spec: AgentSpec, workers: int) -> bool:
    """Serve with `workers` processes until stopped; False when they could not start."""
    export(settings, spec)
    config = uvicorn.Config(
        FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        timeout_graceful_shutdown=5,
        # a spawned worker first imports the command line's own module (torch among it) and
        # answers no health check meanwhile: seconds on 2 cores, past uvicorn's default of 5
        timeout_worker_healthcheck=HEALTHCHECK_S,
    )
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    return not any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes)
