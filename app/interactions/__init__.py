"""Inbound Slack: the bolt app, its listeners by surface, what people are told, and Socket
Mode. This package calls the core (decisions, the store) and outbound Slack; nothing below
imports it."""
