def test_welcome_then_status(server):
    client = server.connect()
    client.expect("Welcome to the chatroom!", "*** You are guest1 in #lobby. Type /help for commands.")


def test_three_clients(server):
    a, b, c = server.join(), server.join(), server.join()
    a.say("hi")
    b.expect(f"<{a.nick}> hi")
    c.expect(f"<{a.nick}> hi")
    a.ping()
