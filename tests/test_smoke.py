from tests.conftest import posted


def test_webhook_posts_message(service, slack, rotor):
    approval = rotor.enqueue("payments", {"amount": 120})
    message = posted(slack, approval["id"])
    assert message.channel == "C0FINANCE"
