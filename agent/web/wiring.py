"""From the ``web`` config section to a running page's access rules, the
first-start credential included."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from agent.config.model import WebConfig
from agent.web.access import ActionLog, WebAccess, default_hosts
from agent.web.users import UserStore, first_start

log = logging.getLogger(__name__)

USERS_FILE = "web-users.json"


def users_path(web: WebConfig, data_dir: Path) -> Path:
    return web.users_file or data_dir / USERS_FILE


def build_access(web: WebConfig, data_dir: Path, record_action: ActionLog | None = None,
                 admin_password: str | None = None, force_login: bool = False,
                 create_first: bool = True) -> WebAccess:
    """The page's ``WebAccess`` for this config.

    With the login on and no users yet, creates ``admin`` (technician) with
    ``admin_password`` (the ``web_admin_password`` secret) or a random password
    written beside the users file, and logs where it is.
    :param force_login: safe mode: the login stays on whatever the file says.
    :param create_first: create the first user when there is none (not in safe mode).
    """
    login = web.login or force_login
    store = UserStore(users_path(web, data_dir)) if login else None
    if store is not None and create_first:
        try:
            done = first_start(store, admin_password)
        except OSError as err:
            log.error("could not create the first web user in %s: %s; add one with "
                      "`dairy-edge web user add NAME --role technician`", store.path, err)
            done = None
        if done is not None:
            log.warning("status page: created user %r (technician) with the password from "
                        "%s. Add your own users with `dairy-edge web user add NAME --role "
                        "ROLE`.",
                        done["user"], done["password_from"])
    elif store is None:
        log.warning("status page login is OFF (web.login: false): anyone who reaches "
                    "%s:%d can use it", web.host, web.port)
    return WebAccess(
        users=store,
        allowed_hosts=frozenset(h.lower() for h in [*default_hosts(), *web.allowed_hosts]),
        metrics_open=web.metrics_open,
        secure_cookies=web.tls_cert is not None,
        session_idle_s=web.session_hours * 3600.0,
        record_action=record_action,
    )


def tls_context(web: WebConfig) -> ssl.SSLContext | None:
    if web.tls_cert is None or web.tls_key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(web.tls_cert, web.tls_key)
    return ctx
