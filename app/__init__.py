"""rotor-slack: human approvals for Rotor queues, in Slack."""
