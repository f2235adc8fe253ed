"""The IRC client protocol (RFC 1459/2812, IRCv3) as a gchat front-end.

Pure modules here (``message``, ``replies``, ``caps``, ``text``, ``style``) turn
bytes into messages and news into bytes; sockets stay in the session layer.
"""
