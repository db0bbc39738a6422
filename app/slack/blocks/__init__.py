"""Block Kit, one module a surface: pure functions from data to `slack_sdk.models`, no I/O.

Everything from a payload, a queue name or a job id is untrusted: it goes into `plain_text`
or rich-text preformatted elements, or is escaped before it lands in mrkdwn, so nothing in
it can ping, link or format (`text`).
"""
