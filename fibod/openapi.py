"""The OpenAPI description served at /openapi.yaml (docs/API.md in prose)."""

from __future__ import annotations

OPENAPI_YAML = """\
openapi: 3.0.3
info:
  title: fibod
  version: "1"
  description: >-
    Submit a Fibonacci task, then fetch F(0)..F(sn-1) as a stream whose
    first byte is the task status. See docs/API.md.
paths:
  /myapp/fibo:
    get:
      summary: Submit a task for F(0)..F(sn-1)
      parameters:
        - {name: sn, in: query, required: true, schema: {type: integer, minimum: 0}}
      responses:
        "202": {description: "Queued; body is the id (text) or the task (JSON); Location"}
        "400": {description: "Bad sn; plain-text reason"}
        "503": {description: "Task store or queue unavailable; Retry-After"}
  /myapp/fibotask:
    get:
      summary: Status byte, then the sequence once ready
      parameters:
        - {name: id, in: query, required: true, schema: {type: string, pattern: "^[0-9a-f]{20}$"}}
        - {name: format, in: query, schema: {type: string, enum: [text, lines, binary]}}
        - {name: wait, in: query, schema: {type: number, minimum: 0}}
      responses:
        "200": {description: "0x00 then the numbers"}
        "202": {description: "0x01 then the state word (queued/running); Retry-After"}
        "400": {description: "Malformed id or option"}
        "404": {description: "Unknown id"}
        "410": {description: "0x03 then a reason: the task expired"}
        "500": {description: "0x02 then the reason the task failed"}
  /myapp/fibotask/id={id}:
    get:
      summary: The same as /myapp/fibotask?id=, in the original path form
      parameters:
        - {name: id, in: path, required: true, schema: {type: string}}
      responses:
        "200": {description: "As /myapp/fibotask"}
  /myapp/tasks/{id}:
    get:
      summary: The task as JSON
      parameters:
        - {name: id, in: path, required: true, schema: {type: string}}
      responses:
        "200": {description: "{id, sn, state, progress, created, started, finished}"}
        "404": {description: "Unknown id"}
        "410": {description: "Expired"}
"""
