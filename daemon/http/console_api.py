"""The console's own small API: pronunciation practice over HTTP.

`POST /api/practice/score {"target", "record_id", "learner"?, "language"?}` scores a stored record's text
against the target (daemon.pronounce.score, as the MQTT `pronounce` command does for live finals) and keeps
the attempt; `GET /api/practice/attempts?learner&limit` lists the latest attempts, newest first.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from daemon.http.deps import core, refuse
from daemon.pronounce.score import score

log = logging.getLogger(__name__)
router = APIRouter(tags=["console"])


class ScoreRequest(BaseModel):
    target: str = Field(..., min_length=1, max_length=500)
    record_id: str = Field(..., min_length=1, max_length=64)
    learner: str | None = Field(None, max_length=100)
    language: str | None = Field(None, pattern=r"^[a-z]{2,3}$")


@router.post("/api/practice/score")
async def practice_score(body: ScoreRequest, request: Request) -> dict[str, Any]:
    app = core(request)
    target = body.target.strip()
    if not target:
        raise refuse(422, "target must not be blank")
    record = app.store.get(body.record_id)
    if record is None:
        raise refuse(404, f"no record {body.record_id}")
    if record.status != "done" or not (record.text or "").strip():
        raise refuse(409, f"record {body.record_id} has no text to score (status {record.status})")
    result = score(target, record.text or "", body.language or None).as_dict()
    learner = (body.learner or "").strip() or None
    result["learner"] = learner
    result["record_id"] = record.id
    result["session_id"] = record.session_id
    result["attempt_id"] = app.store.add_attempt(result, learner, record.session_id, record.id)
    log.info("practice attempt %s scored %d", result["attempt_id"], result["score"])
    return {"ok": True, "result": result}


@router.get("/api/practice/attempts")
async def practice_attempts(
    request: Request,
    learner: str | None = Query(None, max_length=100),
    limit: int = Query(50, ge=1, le=1000),
) -> dict[str, Any]:
    rows = core(request).store.attempts(learner=(learner or "").strip() or None)
    return {"ok": True, "items": rows[::-1][:limit]}
