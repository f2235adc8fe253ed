"""The web front-end: gchat serves its own chat page and speaks JSON over a WebSocket.

``requests`` parses what the page sends, ``style`` renders the chat's news as
the page's events (each one WebSocket frame, encoded once per fan-out), and
``wire`` is the connection's HTTP and WebSocket protocol (h11 and websockets,
sans-I/O). All three are pure: the socket and its greenlets live in the
web session.
"""
