"""IRC rendering of news (IrcStyle), numerics and CAP negotiation: pure, no server."""

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gchat import news
from gchat.irc import caps, replies
from gchat.irc.caps import Caps, negotiate
from gchat.irc.message import MAX_BODY, Message, parse
from gchat.irc.style import IrcStyle

PLAIN = IrcStyle()


@dataclass(frozen=True)
class Person:
    """A ``news.Person`` as a listing reads it."""

    nick: str
    host: str
    oper: bool
    away: str


AT = 1700000000.5
STAMP = "2023-11-14T22:13:20.500Z"


def lines(data: bytes) -> "list[str]":
    assert data.endswith(b"\r\n")
    return data.decode().split("\r\n")[:-1]


def message(text="hi", kind=news.Kind.SAY, nick="alice", room="#room"):
    return news.Message(room, nick, "127.0.0.1", text, kind, AT)


# Room news


def test_a_line_clients_message_is_a_privmsg_from_nick_at_host():
    assert PLAIN.render(message()) == b":alice!alice@127.0.0.1 PRIVMSG #room :hi\r\n"


def test_an_action_is_a_ctcp_action():
    assert (
        PLAIN.render(message("waves", news.Kind.ACTION))
        == b":alice!alice@127.0.0.1 PRIVMSG #room :\x01ACTION waves\x01\r\n"
    )


def test_a_notice_is_a_notice():
    assert PLAIN.render(message(kind=news.Kind.NOTICE)) == b":alice!alice@127.0.0.1 NOTICE #room :hi\r\n"


def test_server_time_tags_messages_with_their_time():
    assert (
        IrcStyle(time=True).render(message())
        == f"@time={STAMP} :alice!alice@127.0.0.1 PRIVMSG #room :hi\r\n".encode()
    )


def test_an_ipv6_host_starting_with_a_colon_gets_a_zero():
    item = news.Entered("#room", "alice", "::1")
    assert PLAIN.render(item) == b":alice!alice@0::1 JOIN :#room\r\n"


@pytest.mark.parametrize(
    ("item", "wire"),
    [
        (news.Entered("#r", "bob", "h"), ":bob!bob@h JOIN :#r"),
        (news.Parted("#r", "bob", "h", "bye"), ":bob!bob@h PART #r :bye"),
        (news.Parted("#r", "bob", "h", ""), ":bob!bob@h PART :#r"),
        (news.Gone("bob", "h", "connection closed"), ":bob!bob@h QUIT :connection closed"),
        (news.Renamed("bob", "rob", "h"), ":bob!bob@h NICK :rob"),
        (news.TopicChanged("#r", "new topic", "op", "h"), ":op!op@h TOPIC #r :new topic"),
        (news.Kicked("#r", "bob", "op", "h", "spam"), ":op!op@h KICK #r bob :spam"),
    ],
)
def test_room_news_maps_to_the_irc_command(item, wire):
    assert PLAIN.render(item) == (wire + "\r\n").encode()


def test_a_long_line_client_message_reaches_irc_as_several_messages_within_512_bytes():
    text = "é" * 1000 + "end"
    data = PLAIN.render(message(text))
    sent = lines(data)
    assert len(sent) > 1
    assert all(len(line.encode()) + 2 <= MAX_BODY + 2 for line in sent)
    assert "".join(parse(line.encode()).params[1] for line in sent) == text


def test_a_long_action_is_cut_into_several_whole_actions():
    sent = lines(PLAIN.render(message("x" * 1000, news.Kind.ACTION)))
    texts = [parse(line.encode()).params[1] for line in sent]
    assert all(t.startswith("\x01ACTION ") and t.endswith("\x01") for t in texts)
    assert "".join(t[8:-1] for t in texts) == "x" * 1000


def test_a_long_topic_is_cut_to_fit_the_line():
    data = PLAIN.render(news.TopicChanged("#r", "t" * 4000, "op", "h"))
    assert len(data) == MAX_BODY + 2


@given(
    st.text(min_size=1, max_size=3000).filter(lambda t: "\r" not in t and "\n" not in t and "\x00" not in t)
)
def test_any_message_fits_irc_lines_and_loses_nothing(text):
    sent = lines(PLAIN.render(message(text)))
    assert all(len(line.encode()) <= MAX_BODY for line in sent)
    assert "".join(parse(line.encode()).params[1] for line in sent) == text


def test_equal_caps_give_equal_styles_so_renderings_are_shared():
    first = IrcStyle.of(frozenset({caps.SERVER_TIME, caps.MESSAGE_TAGS}))
    second = IrcStyle.of(frozenset({caps.SERVER_TIME, caps.MULTI_PREFIX}))
    assert first == second
    assert hash(first) == hash(second)
    assert IrcStyle.of(frozenset({caps.MESSAGE_TAGS})) == PLAIN
    assert IrcStyle.of(frozenset({caps.ECHO_MESSAGE})).echo


# Personal news

MEMBERS = (Person("alice", "h", False, ""), Person("Bob", "h", True, ""))


def arrived(history=(), topic="hello"):
    return news.Arrived("#r", "alice", "h", MEMBERS, topic, history, False)


def test_arrived_is_join_topic_names():
    assert lines(PLAIN.tell(arrived(), "alice")) == [
        ":alice!alice@h JOIN :#r",
        ":gchat.irc 332 alice #r :hello",
        ":gchat.irc 353 alice = #r :alice @Bob",
        ":gchat.irc 366 alice #r :End of /NAMES list",
    ]


def test_arrived_without_topic_sends_no_topic_numeric():
    assert b" 332 " not in PLAIN.tell(arrived(topic=""), "alice")


def test_history_is_replayed_after_names_with_original_times_in_a_batch():
    history = (message("one", room="#r"), message("two", news.Kind.ACTION, "bob", "#r"))
    sent = lines(IrcStyle(time=True, batch=True).tell(arrived(history), "alice"))
    assert sent[4:] == [
        ":gchat.irc BATCH +history chathistory :#r",
        f"@time={STAMP};batch=history :alice!alice@127.0.0.1 PRIVMSG #r :one",
        f"@time={STAMP};batch=history :bob!bob@127.0.0.1 PRIVMSG #r :\x01ACTION two\x01",
        ":gchat.irc BATCH :-history",
    ]


def test_a_client_that_asks_for_history_itself_gets_none_replayed_on_arrival():
    style = IrcStyle.of(frozenset({"batch", "server-time", "draft/chathistory"}))
    assert style.tell(arrived((message("one", room="#r"),)), "alice") == style.tell(arrived(), "alice")


def test_history_without_batch_or_time_is_plain_messages():
    sent = lines(PLAIN.tell(arrived((message("one", room="#r"),)), "alice"))
    assert sent[4:] == [":alice!alice@127.0.0.1 PRIVMSG #r :one"]


def test_many_members_are_listed_in_several_353_lines_within_512_bytes():
    members = tuple(Person(f"user{i:019d}", "h", False, "") for i in range(100))
    sent = lines(PLAIN.tell(news.MemberList("#r", members), "alice"))
    names = [line for line in sent if " 353 " in line]
    assert len(names) > 1
    assert all(len(line) <= MAX_BODY for line in names)
    assert sum(len(parse(line.encode()).params[-1].split()) for line in names) == 100
    assert sent[-1] == ":gchat.irc 366 alice #r :End of /NAMES list"


def test_private_message_is_a_privmsg_to_the_nick():
    item = news.Private("bob", "h", "alice", "psst", news.Kind.SAY, AT)
    assert PLAIN.tell(item, "alice") == b":bob!bob@h PRIVMSG alice :psst\r\n"


def test_room_list():
    assert lines(PLAIN.tell(news.RoomList((("#a", 2, "t a"), ("#lobby", 1, ""))), "al")) == [
        ":gchat.irc 321 al Channel :Users  Name",
        ":gchat.irc 322 al #a 2 :t a",
        ":gchat.irc 322 al #lobby 1 :",
        ":gchat.irc 323 al :End of /LIST",
    ]


@pytest.mark.parametrize(
    ("item", "wire"),
    [
        (news.TopicIs("#r", "t"), ":gchat.irc 332 al #r :t"),
        (news.TopicIs("#r", ""), ":gchat.irc 331 al #r :No topic is set"),
        (news.NoSuchNick("zed"), ":gchat.irc 401 al zed :No such nick/channel"),
        (news.NickInUse("bob"), ":gchat.irc 433 al bob :Nickname is already in use"),
        (news.InvalidNick("9x"), ":gchat.irc 432 al 9x :Erroneous nickname"),
        (news.InvalidNick(":a b"), ":gchat.irc 432 al * :Erroneous nickname"),
        (news.InvalidRoom("#a.b"), ":gchat.irc 479 al #a.b :Illegal channel name"),
        (news.TooManyRooms("#r"), ":gchat.irc 405 al #r :You have joined too many channels"),
        (news.NotIn("#r"), ":gchat.irc 442 al #r :You're not on that channel"),
        (
            news.TooManyMessages("bob"),
            ":gchat.irc 263 al PRIVMSG :Too many messages to bob from your address, try again later",
        ),
        (
            news.Notice.TOO_MANY_JOINS,
            ":gchat.irc 263 al JOIN :Too many joins from your address, try again later",
        ),
        (news.Notice.WRONG_OPERATOR, ":gchat.irc 464 al :Password incorrect"),
        (news.Notice.NO_MORE_OPER_TRIES, ":gchat.irc 491 al :No more OPER tries on this connection"),
        (news.Notice.PERMISSION_DENIED, ":gchat.irc 481 al :Permission Denied- You're not an IRC operator"),
        (news.Notice.LINK_LOST, ":gchat.irc NOTICE al :Cluster link lost, local only"),
        (news.Notice.LINK_RESTORED, ":gchat.irc NOTICE al :Cluster link restored"),
        (news.Notice.SHUTTING_DOWN, "ERROR :Server shutting down"),
        (news.Notice.BYE, "ERROR :Bye!"),
        (news.Left("#r", "al", "h", "x"), ":al!al@h PART #r :x"),
        (news.NickChanged("al", "Al", "h"), ":al!al@h NICK :Al"),
        (
            news.Kicked("#r", "bob", "al", "h", "spam"),
            ":gchat.irc NOTICE al :bob was kicked by al (spam)",
        ),
        (news.AddressBanned("1.2.3.4"), ":gchat.irc NOTICE al :Banned 1.2.3.4"),
        (news.AddressUnbanned("1.2.3.4"), ":gchat.irc NOTICE al :Unbanned 1.2.3.4"),
        (news.NotBanned("1.2.3.4"), ":gchat.irc NOTICE al :Not banned: 1.2.3.4"),
        (news.OwnAddress("1.2.3.4"), ":gchat.irc NOTICE al :Cannot ban your own address: 1.2.3.4"),
    ],
)
def test_personal_news_maps_to_numerics(item, wire):
    assert PLAIN.tell(item, "al") == (wire + "\r\n").encode()


def test_now_operator_is_381_and_user_mode_o():
    assert lines(PLAIN.tell(news.Notice.NOW_OPERATOR, "al")) == [
        ":gchat.irc 381 al :You are now an IRC operator",
        ":gchat.irc MODE al :+o",
    ]


def test_already_in_a_room_is_ignored_as_irc_servers_do():
    assert PLAIN.tell(news.AlreadyIn("#r"), "al") == b""


def test_every_personal_news_type_renders_to_wire_lines():
    # A new news type without an IRC rendering would reach clients as nothing.
    samples = [
        *news.Notice,
        arrived(),
        news.Private("b", "h", "al", "x", news.Kind.NOTICE, AT),
        news.MemberList("#r", MEMBERS),
    ]
    for item in samples:
        data = PLAIN.tell(item, "al")
        assert data
        assert all(isinstance(parse(line.encode()), Message) for line in lines(data))


# Registration numerics


def test_welcome_burst_is_001_to_005_lusers_and_no_motd():
    sent = lines(replies.welcome("al", "h", "today", replies.Counts(3, 1, 3, 2)))
    codes = [line.split()[1] for line in sent]
    assert codes == ["001", "002", "003", "004", "005", "251", "254", "255", "422"]
    isupport = parse(sent[4].encode()).params[1:-1]
    assert {"CASEMAPPING=ascii", "CHANTYPES=#", "NICKLEN=24", "CHANNELLEN=33", "PREFIX=(o)@"} <= set(isupport)
    assert "CHANMODES=,,,nt" in isupport
    assert "NETWORK=gchat" in isupport


def test_lusers_counts_the_cluster_as_the_network_and_this_node_as_the_server():
    assert lines(replies.lusers("al", replies.Counts(users=5, servers=2, clients=3, rooms=4))) == [
        ":gchat.irc 251 al :There are 5 users and 0 invisible on 2 servers",
        ":gchat.irc 254 al 4 :channels formed",
        ":gchat.irc 255 al :I have 3 clients and 1 servers",
    ]


# CAP


def test_cap_ls_offers_what_the_issue_asks_for_userhost_in_names_and_chathistory():
    asked = {"message-tags", "server-time", "echo-message", "multi-prefix", "batch", "cap-notify"}
    offered = asked | {"userhost-in-names", "draft/chathistory"}
    assert offered == caps.SUPPORTED


def test_cap_ls_lists_every_supported_cap_and_holds_registration():
    state, reply = negotiate(Caps(), ("LS", "302"), "*")
    assert reply == b":gchat.irc CAP * LS :" + " ".join(sorted(caps.SUPPORTED)).encode() + b"\r\n"
    assert state.holding
    assert state.version == 302
    assert caps.CAP_NOTIFY in state.enabled


def test_cap_ls_without_version_does_not_enable_cap_notify():
    state, _ = negotiate(Caps(), ("LS",), "*")
    assert state.version == 301
    assert not state.enabled


def test_cap_req_is_acked_whole():
    state, reply = negotiate(Caps(), ("REQ", "server-time echo-message"), "*")
    assert reply == b":gchat.irc CAP * ACK :server-time echo-message\r\n"
    assert state.enabled == {"server-time", "echo-message"}
    assert state.holding


def test_cap_req_with_an_unknown_cap_is_nakd_whole():
    state, reply = negotiate(Caps(), ("REQ", "server-time sasl"), "*")
    assert reply == b":gchat.irc CAP * NAK :server-time sasl\r\n"
    assert not state.enabled


def test_cap_req_minus_disables():
    state, _ = negotiate(Caps(frozenset({"batch", "server-time"})), ("REQ", "-batch"), "al")
    assert state.enabled == {"server-time"}


def test_cap_list_and_end():
    state, reply = negotiate(Caps(frozenset({"batch"}), 302, True), ("list",), "al")
    assert reply == b":gchat.irc CAP al LIST :batch\r\n"
    state, reply = negotiate(state, ("END",), "al")
    assert reply == b""
    assert not state.holding


def test_cap_unknown_subcommand_and_missing_one():
    assert negotiate(Caps(), ("FOO",), "al")[1] == b":gchat.irc 410 al FOO :Invalid CAP command\r\n"
    assert negotiate(Caps(), (), "al")[1] == b":gchat.irc 461 al CAP :Not enough parameters\r\n"


@given(st.binary(max_size=500))
def test_cap_never_raises_and_answers_parseable_lines(data):
    parsed = parse(b"CAP " + data)
    assert isinstance(parsed, Message)
    state, reply = negotiate(Caps(), parsed.params, "*")
    assert state.enabled <= caps.SUPPORTED
    for line in lines(reply) if reply else []:
        assert isinstance(parse(line.encode()), Message)
        assert len(line.encode()) <= MAX_BODY


_ANY_WORD = st.text(st.characters(blacklist_categories=("Cs",)), max_size=600)


@given(st.lists(_ANY_WORD, max_size=6), _ANY_WORD)
def test_a_numeric_quoting_any_client_words_is_one_line_within_512_bytes(words, last):
    last = last.replace("\r", "").replace("\n", "").replace("\x00", "")
    data = replies.numeric(replies.ERR_UNKNOWNCOMMAND, "nick", *words, last)
    assert data.endswith(b"\r\n")
    assert data.count(b"\n") == 1
    assert len(data) <= MAX_BODY + 2
    assert isinstance(parse(data[:-2]), Message)
