"""A tiny bridge child for tests/harness/adapters/test_bridge.py: the in-process reference service
(`presence_conformance.reference_impl.service.PresenceService`) served over the bridge protocol (docs/bridge.md).

    python tests/harness/adapters/bridge_child.py [--leave-grace S] [--fault KIND:OP]...

Faults, to test how the adapter copes (KIND:OP, OP an operation name or `*`):
- `hang:OP`     never answer OP (keeps reading and answering nothing more for it)
- `freeze:OP`   stop the process's event loop on OP (answers nothing at all any more)
- `crash:OP`    write a line to stderr and exit with code 3 on OP
- `garbage:OP`  answer OP with a line that is not JSON
- `badresult:OP` answer OP with a result of the wrong shape
- `unknown-id:OP` answer OP with an id that was never asked

`--once PATH`: apply the faults only if PATH does not exist yet (and create it), so that the
child the adapter starts after killing this one behaves.
`--grandchild`: start `sleep 600` in the child's process group and write its pid to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.service import PresenceService
from presence_conformance.reference_impl.types import data_from_json

FEATURES = [
    "history",
    "binary-data",
    "abrupt-disconnect",
    "capabilities",
    "anonymous-clients",
    "multiple-connections",
    "sync-complete",
    "wait-for-sync-option",
    "unsubscribe-by-action",
    "subscribe-action-list",
    "large-messages",
    "argument-validation",
]


def write(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Child:
    def __init__(self, leave_grace: float, faults: dict[str, str]) -> None:
        self.service = PresenceService(leave_grace=leave_grace)
        self.faults = faults
        self.conns: dict[str, Any] = {}
        self.listeners: dict[tuple[str, str, str], Any] = {}
        self.pages: dict[str, Any] = {}
        self.page_ids = 0

    def fault(self, op: str) -> str | None:
        return self.faults.get(op) or self.faults.get("*")

    async def handle(self, req: dict) -> None:
        rid, op = req["id"], req["op"]
        fault = self.fault(op) if op not in ("hello", "shutdown") else self.faults.get(op)
        if fault == "hang":
            return
        if fault == "freeze":
            time.sleep(3600)
        if fault == "crash":
            sys.stderr.write(f"bridge_child: crashing on {op} as asked\n")
            sys.stderr.flush()
            os._exit(3)
        if fault == "garbage":
            sys.stdout.write(f"this is not json ({op})\n")
            sys.stdout.flush()
            return
        if fault == "badresult":
            write({"id": rid, "ok": True, "result": {"unexpected": True}})
            return
        if fault == "unknown-id":
            write({"id": rid + 1000, "ok": True, "result": None})
            return
        try:
            result = await getattr(self, "op_" + op)(req)
        except PresenceError as exc:
            write(
                {
                    "id": rid,
                    "ok": False,
                    "error": {
                        "code": exc.code,
                        "statusCode": exc.status_code,
                        "message": exc.message,
                    },
                }
            )
        except NotImplementedError as exc:
            write({"id": rid, "ok": False, "error": {"type": "unsupported", "message": str(exc)}})
        except Exception as exc:  # a bug here
            write(
                {
                    "id": rid,
                    "ok": False,
                    "error": {"type": "internal", "message": f"{type(exc).__name__}: {exc}"},
                }
            )
        else:
            write({"id": rid, "ok": True, "result": result})
        if op == "shutdown":
            await asyncio.sleep(0)
            os._exit(0)

    def presence(self, req: dict) -> Any:
        return self.conns[req["connection"]].channels.get(req["channel"]).presence

    async def op_hello(self, req: dict) -> dict:
        return {
            "protocol": 1,
            "sdk": "reference-service (tests/harness/adapters/bridge_child.py)",
            "features": FEATURES,
            "ops": ["quiesce"],
        }

    async def op_connect(self, req: dict) -> dict:
        client_id = req["clientId"]
        conn = await self.service.connect(
            None if client_id == "*" else client_id, req.get("capability")
        )
        self.conns[req["connection"]] = conn
        return {"connectionId": conn.id, "clientId": client_id}

    async def op_enter(self, req: dict) -> None:
        await self.presence(req).enter(data_from_json(req.get("data")))

    async def op_update(self, req: dict) -> None:
        await self.presence(req).update(data_from_json(req.get("data")))

    async def op_leave(self, req: dict) -> None:
        await self.presence(req).leave(data_from_json(req.get("data")))

    async def op_get(self, req: dict) -> list:
        members = await self.presence(req).get(
            req.get("clientId"), req.get("connectionId"), req.get("waitForSync", True)
        )
        return [m.to_json() for m in members]

    def listener(self, req: dict) -> Any:
        key = (req["connection"], req["channel"], req["subscription"])
        listener = self.listeners.get(key)
        if listener is None:
            subscription = req["subscription"]

            def listener(message: Any) -> None:
                write(
                    {
                        "event": "presence",
                        "subscription": subscription,
                        "message": message.to_json(),
                    }
                )

            self.listeners[key] = listener
        return listener

    async def op_subscribe(self, req: dict) -> None:
        await self.presence(req).subscribe(self.listener(req), req["actions"])

    async def op_unsubscribe(self, req: dict) -> None:
        listener = self.listener(req) if req["subscription"] else None
        self.presence(req).unsubscribe(listener, req["actions"])

    def page(self, page: Any) -> dict:
        handle = None
        if page.has_next():
            self.page_ids += 1
            handle = f"p{self.page_ids}"
            self.pages[handle] = page
        return {
            "items": [m.to_json() for m in page.items],
            "hasNext": page.has_next(),
            "page": handle,
        }

    async def op_history(self, req: dict) -> dict:
        page = await self.presence(req).history(
            req.get("start"), req.get("end"), req.get("limit"), req.get("direction")
        )
        return self.page(page)

    async def op_history_next(self, req: dict) -> dict | None:
        page = await self.pages.pop(req["page"]).next()
        return None if page is None else self.page(page)

    async def op_sync_complete(self, req: dict) -> bool:
        return self.presence(req).sync_complete

    async def op_close(self, req: dict) -> None:
        await self.conns[req["connection"]].close()

    async def op_drop(self, req: dict) -> None:
        await self.conns[req["connection"]].drop()

    async def op_quiesce(self, req: dict) -> bool:
        while self.service.pending_deliveries():
            await asyncio.sleep(0.001)
        return True

    async def op_shutdown(self, req: dict) -> None:
        return None


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leave-grace", type=float, default=0.3)
    parser.add_argument("--fault", action="append", default=[])
    parser.add_argument("--once", default=None)
    parser.add_argument("--grandchild", action="store_true")
    args = parser.parse_args()
    faults = dict(f.split(":", 1)[::-1] for f in args.fault)  # op -> kind
    if args.once is not None:
        if os.path.exists(args.once):
            faults = {}
        else:
            open(args.once, "w").close()
    if args.grandchild:
        sleeper = await asyncio.create_subprocess_exec("sleep", "600")
        sys.stderr.write(f"grandchild pid {sleeper.pid}\n")
        sys.stderr.flush()
    child = Child(args.leave_grace, faults)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks = set()
    while True:
        line = await reader.readline()
        if not line:
            break
        task = asyncio.create_task(child.handle(json.loads(line)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


if __name__ == "__main__":
    asyncio.run(main())
