"""Checks: may these subjects be processed for this purpose, now or as of an instant?

`facts` gathers the standings (one interface; `facts_pg` is its PostgreSQL implementation),
`rule.decide` decides, `services` runs bulk and streamed checks, `selectors` the single one,
`api` holds their views.
"""
