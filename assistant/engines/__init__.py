"""One module per real engine, each behind a stage contract (``assistant.stages``).

Only the composition root (``assistant.registry``) imports these, by name, when the settings choose
them; an engine imports contracts and helpers only (``make lint`` checks both).
"""
