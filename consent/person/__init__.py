"""A person's whole record for privacy staff, in the admin: found by an exact identifier
(through the keyed hash), shown with states, history, links and decisions, and acted on
through the existing services. Other apps add their sections and actions (registry.py)."""
