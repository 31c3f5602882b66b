"""The fleet service: every Pi's upstream facts gathered once, for a district (docs/fleet.md).

broker --MQTT v5 shared subscription--> ingest (decode, validate: schemas) -> store (SQLite |
PostgreSQL; each fact once by id) -> acknowledge. Beside the store: the lift registry (registry),
alarm escalation to a webhook (escalation), answers over any set of cars and period (answers, built on
edge_daemon/report) and the dashboard (dashboard). `liftwatch fleet ...` (cli) runs them.
"""
