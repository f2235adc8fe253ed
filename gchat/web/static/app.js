// gchat's web page: one WebSocket, JSON events in and out (see the README's "Web page" section).
// Every piece of text from the server is put in the page with textContent, never as HTML.
"use strict";

(function () {
  const NICK_KEY = "gchat.nick";
  const BACKOFF = [1000, 2000, 4000, 8000, 15000];
  const ROOM_REFRESH_MS = 15000;
  // Older lines asked for at a time when the reader scrolls to the top (the server allows 100).
  const OLDER_LIMIT = 50;
  // How near the top (px) counts as at the top.
  const OLDER_MARGIN = 40;
  const NOTICES = {
    shutting_down: "The server is shutting down.",
    link_lost: "The cluster link is lost: only this node's users hear you for now.",
    link_restored: "The cluster link is restored.",
    too_many_joins: "Too many joins from your address; try again later.",
    now_operator: "You are now an operator.",
    wrong_operator: "Wrong operator name or password.",
    no_more_oper_tries: "No more /oper tries on this connection.",
    permission_denied: "Permission denied.",
    bye: "Bye!",
  };
  const ERRORS = {
    no_such_nick: (e) => `No such user: ${e.nick}`,
    nick_in_use: (e) => `That nick is in use: ${e.nick}`,
    invalid_nick: (e) => `Invalid nick: ${e.nick} (a letter, then letters, digits, _ or -; 24 at most)`,
    invalid_room: (e) => `Invalid room: ${e.room}`,
    already_in: (e) => `You are already in ${e.room}`,
    not_in: (e) => `You are not in ${e.room}`,
    too_many_messages: (e) => `Too many messages to ${e.nick} from your address; try again later`,
    not_banned: (e) => `Not banned: ${e.address}`,
    own_address: (e) => `You cannot ban your own address: ${e.address}`,
    error: (e) => e.text,
  };
  const HELP = [
    "/nick NAME: change your nick (remembered on this device)",
    "/join ROOM: join a room (created on demand); /part: leave this one",
    "/msg NICK TEXT: a private message; /me TEXT: an action",
    "/who: who is in this room; /rooms: every room",
    "/topic [TEXT]: this room's topic (operators: set it); /away [TEXT]",
    "/pass SECRET, /oper NAME PASSWORD, /kick NICK [REASON], /ban NICK, /unban ADDRESS, /quit",
    "// at the start sends a message starting with /",
  ];

  const $ = (id) => document.getElementById(id);
  const ui = {
    app: $("app"),
    rooms: $("rooms"),
    allRooms: $("all-rooms"),
    conversations: $("conversations"),
    joinForm: $("join-form"),
    joinInput: $("join-input"),
    nickButton: $("nick-button"),
    menuToggle: $("menu-toggle"),
    menuUnread: $("menu-unread"),
    title: $("title"),
    topic: $("topic"),
    partButton: $("part-button"),
    membersToggle: $("members-toggle"),
    memberCount: $("member-count"),
    members: $("members"),
    banner: $("banner"),
    log: $("log"),
    composer: $("composer"),
    input: $("input"),
  };

  // Panes: "#room" for rooms, "@nick" for private conversations.
  const panes = new Map();
  let current = null;
  let me = "";
  let socket = null;
  let attempt = 0;
  let everConnected = false;
  let quitting = false;
  let roomListAsked = 0;
  let allRooms = [];
  let refreshTimer = null;
  // The room whose older lines were asked for (one request at a time), or null.
  let olderPending = null;

  function pane(key) {
    let p = panes.get(key);
    if (!p) {
      const log = document.createElement("div");
      log.className = "pane-log";
      // oldest: the time of the oldest line shown (older ones are asked for before it); done: no older ones.
      // members: those the page knows of (an arrival lists the first 100); count: all of them.
      p = { key, log, unread: 0, joined: false, members: new Map(), count: 0, topic: "", last: 0, oldest: null, done: false };
      if (isRoom(key)) {
        // Always there, empty or not, so that "Loading older lines…" appearing moves no line.
        p.marker = document.createElement("div");
        p.marker.className = "older";
        log.append(p.marker);
      }
      panes.set(key, p);
    }
    return p;
  }

  const roomKey = (room) => "#" + room.replace(/^#/, "").toLowerCase();
  const convKey = (nick) => "@" + nick.toLowerCase();
  const isRoom = (key) => key.startsWith("#");

  function clock(at) {
    const d = new Date(at / 1000);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function hue(nick) {
    let h = 0;
    for (const c of nick.toLowerCase()) h = (h * 31 + c.codePointAt(0)) % 360;
    return h;
  }

  function nickSpan(nick) {
    const span = document.createElement("span");
    span.className = "nick";
    span.textContent = nick;
    span.style.setProperty("--hue", hue(nick));
    span.addEventListener("click", () => openConversation(nick));
    return span;
  }

  // A line's element: its time, then parts (strings become text nodes; nodes are used as they are).
  function lineElement(kind, at, parts) {
    const div = document.createElement("div");
    div.className = "line " + kind;
    const time = document.createElement("time");
    time.textContent = clock(at);
    time.dateTime = new Date(at / 1000).toISOString();
    div.append(time);
    const body = document.createElement("span");
    body.className = "body";
    for (const part of parts) body.append(typeof part === "string" ? document.createTextNode(part) : part);
    div.append(body);
    return div;
  }

  // A line at the end of a pane (kept in view if the reader was at the bottom).
  function line(key, kind, at, ...parts) {
    const p = pane(key);
    const div = lineElement(kind, at, parts);
    const atBottom = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 40;
    p.log.append(div);
    if (p.key === current) {
      if (atBottom) ui.log.scrollTop = ui.log.scrollHeight;
    } else if (kind === "message" || kind === "action" || kind === "private") {
      p.unread += 1;
      renderLists();
    }
    return div;
  }

  // at: Unix time in microseconds, as every event has it.
  function notice(text, kind = "notice", at = Date.now() * 1000) {
    line(current || "#lobby", kind, at, text);
  }

  // A chat line's kind and parts, for line() or lineElement().
  function messageParts(e, cls) {
    if (e.kind === "action") return ["action " + cls, ["* ", nickSpan(e.nick), " " + e.text]];
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = e.text;
    return [e.kind === "notice" ? "chat-notice " + cls : cls, [nickSpan(e.nick), " ", text]];
  }

  function showMessage(key, e, cls) {
    const [kind, parts] = messageParts(e, cls);
    line(key, kind, e.at, ...parts);
  }

  function marker(p, text) {
    p.marker.textContent = text;
  }

  // At the top of a room's lines (or with too few to scroll): ask for older ones, one request at a time.
  function askOlder() {
    const p = current && panes.get(current);
    if (!p || !isRoom(p.key) || !p.joined || p.done || olderPending !== null) return;
    if (ui.log.scrollTop > OLDER_MARGIN || !socket || socket.readyState !== WebSocket.OPEN) return;
    olderPending = p.key;
    marker(p, "Loading older lines\u2026");
    socket.send(JSON.stringify({ type: "history", room: p.key, before: p.oldest, limit: OLDER_LIMIT }));
  }

  // The request for older lines of `key` (null: any) will not be answered: the room was left, the socket lost.
  function olderCancelled(key) {
    if (olderPending === null || (key !== null && key !== olderPending)) return;
    marker(pane(olderPending), "");
    olderPending = null;
  }

  // Older lines go above the others, the reader's view staying where it was.
  function olderLines(e) {
    const p = pane(roomKey(e.room));
    if (olderPending !== p.key) return;
    olderPending = null;
    const lines = document.createDocumentFragment();
    for (const m of e.history) {
      const [kind, parts] = messageParts(m, "message history");
      lines.append(lineElement(kind, m.at, parts));
    }
    const fromBottom = ui.log.scrollHeight - ui.log.scrollTop;
    p.marker.after(lines);
    if (e.history.length) p.oldest = e.history[0].at;
    p.done = !e.more;
    marker(p, p.done ? "Start of history" : "");
    if (p.key === current) {
      ui.log.scrollTop = ui.log.scrollHeight - fromBottom;
      askOlder();
    }
  }

  function select(key) {
    current = key;
    const p = pane(key);
    p.unread = 0;
    ui.log.replaceChildren(p.log);
    ui.log.scrollTop = ui.log.scrollHeight;
    askOlder();
    ui.title.textContent = isRoom(key) ? key : key.slice(1);
    ui.topic.textContent = isRoom(key) ? p.topic : "private conversation";
    ui.partButton.textContent = isRoom(key) ? "Leave" : "Close";
    ui.input.placeholder = `Message ${ui.title.textContent} (type /help for commands)`;
    ui.app.classList.remove("menu-open");
    renderLists();
    renderMembers();
  }

  function item(list, key, label, count, unread, onClick) {
    const li = document.createElement("li");
    li.dataset.pane = key;
    if (key === current) li.className = "current";
    const button = document.createElement("button");
    button.type = "button";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = label;
    button.append(name);
    if (count !== null) {
      const c = document.createElement("span");
      c.className = "count";
      c.textContent = String(count);
      button.append(c);
    }
    if (unread > 0) {
      const u = document.createElement("span");
      u.className = "unread";
      u.textContent = String(unread);
      button.append(u);
    }
    button.addEventListener("click", onClick);
    li.append(button);
    list.append(li);
  }

  function renderLists() {
    ui.rooms.replaceChildren();
    ui.conversations.replaceChildren();
    ui.allRooms.replaceChildren();
    let unread = 0;
    for (const p of panes.values()) {
      if (p.key !== current) unread += p.unread;
      if (isRoom(p.key) && p.joined) {
        item(ui.rooms, p.key, p.key, p.count, p.unread, () => select(p.key));
      } else if (!isRoom(p.key)) {
        item(ui.conversations, p.key, p.nick, null, p.unread, () => select(p.key));
      }
    }
    for (const [room, count] of allRooms) {
      if (!(panes.get(room) || {}).joined) item(ui.allRooms, room, room, count, 0, () => send({ type: "join", room }));
    }
    ui.menuUnread.hidden = unread === 0;
    ui.menuUnread.textContent = String(unread);
    document.title = unread > 0 ? `(${unread}) gchat` : "gchat";
  }

  function renderMembers() {
    ui.members.replaceChildren();
    const p = current && panes.get(current);
    const room = p && isRoom(p.key);
    ui.membersToggle.hidden = !room;
    ui.memberCount.textContent = room ? String(p.count) : "";
    if (!room) return;
    const sorted = [...p.members.values()].sort((a, b) => a.nick.toLowerCase().localeCompare(b.nick.toLowerCase()));
    for (const m of sorted) {
      const li = document.createElement("li");
      li.append(nickSpan(m.nick));
      if (m.oper) li.classList.add("oper");
      if (m.away) {
        li.classList.add("away");
        li.title = "away: " + m.away;
      }
      if (m.nick === me) li.classList.add("self");
      ui.members.append(li);
    }
    if (p.count > p.members.size) {
      const li = document.createElement("li");
      li.className = "more";
      li.textContent = `and ${p.count - p.members.size} more (/who lists everyone)`;
      ui.members.append(li);
    }
  }

  function setMe(nick) {
    me = nick;
    ui.nickButton.textContent = nick;
  }

  function openConversation(nick) {
    if (nick === me) return;
    const p = pane(convKey(nick));
    p.nick = nick;
    select(p.key);
    ui.input.focus();
  }

  function membersOf(nick) {
    const key = nick.toLowerCase();
    return [...panes.values()].filter((p) => isRoom(p.key) && p.joined && p.members.has(key));
  }

  // The rooms of which the page knows only some members (an arrival lists at most 100).
  function partlyKnown() {
    return [...panes.values()].filter((p) => isRoom(p.key) && p.joined && p.count > p.members.size);
  }

  // Members the page was told of all at once: an arrival's first ones (itself included), or a who.
  function knowMembers(p, list, count) {
    p.members = new Map(list.map((m) => [m.nick.toLowerCase(), m]));
    if (me && !p.members.has(me.toLowerCase())) p.members.set(me.toLowerCase(), { nick: me });
    p.count = Math.max(count, p.members.size);
  }

  function memberLeft(p, nick) {
    if (p.members.delete(nick.toLowerCase()) || p.count > p.members.size) p.count -= 1;
  }

  // After a reconnection: the nick and rooms this page had, to be taken back.
  const reconnecting = { active: false, nick: "", rooms: new Set(), had: new Set() };

  function arrived(e) {
    const key = roomKey(e.room);
    const p = pane(key);
    const back = reconnecting.rooms.has(key);
    p.joined = true;
    p.topic = e.topic;
    setMe(e.nick);
    knowMembers(p, e.members, e.count);
    if (p.oldest === null) p.oldest = e.history.length ? e.history[0].at : e.at;
    for (const m of e.history) if (m.at > p.last) showMessage(key, m, "message history");
    if (e.history.length) p.last = Math.max(p.last, e.history[e.history.length - 1].at);
    if (!back) {
      line(key, "notice", e.at, `You are ${e.nick} in ${key}` + (e.topic ? `. Topic: ${e.topic}` : "") + ". Type /help for commands.");
    }
    reconnecting.rooms.delete(key);
    const switched = e.first && reconnecting.active;
    if (e.first) afterConnect(key);
    if (current === null || current === key || (!back && !switched)) select(key);
    renderLists();
    askRooms(true);
  }

  function afterConnect(lobby) {
    const wanted = reconnecting.nick || localStorage.getItem(NICK_KEY);
    if (wanted && wanted !== me) send({ type: "nick", nick: wanted });
    if (reconnecting.active) {
      for (const key of reconnecting.rooms) send({ type: "join", room: key });
      if (!reconnecting.had.has(lobby)) send({ type: "part", room: lobby, reason: "rejoining" });
    }
    reconnecting.active = false;
    reconnecting.nick = "";
  }

  function handle(e) {
    switch (e.type) {
      case "arrived":
        arrived(e);
        break;
      case "message": {
        const key = roomKey(e.room);
        pane(key).last = e.at;
        showMessage(key, e, "message");
        break;
      }
      case "private": {
        const other = e.nick.toLowerCase() === me.toLowerCase() ? e.to : e.nick;
        const p = pane(convKey(other));
        p.nick = other;
        showMessage(p.key, e, "private");
        if (current === null) select(p.key);
        renderLists();
        break;
      }
      case "entered": {
        const p = pane(roomKey(e.room));
        if (!p.members.has(e.nick.toLowerCase())) p.count += 1;
        p.members.set(e.nick.toLowerCase(), { nick: e.nick });
        line(p.key, "event", e.at, nickSpan(e.nick), ` joined ${p.key}`);
        renderLists();
        renderMembers();
        break;
      }
      case "parted": {
        const p = pane(roomKey(e.room));
        memberLeft(p, e.nick);
        line(p.key, "event", e.at, nickSpan(e.nick), ` left ${p.key}` + (e.reason ? ` (${e.reason})` : ""));
        renderLists();
        renderMembers();
        break;
      }
      case "gone": {
        // One the page never heard of was in a room it knows only partly: if that is one room, there.
        const known = membersOf(e.nick);
        const partly = partlyKnown();
        for (const p of known.length ? known : partly.length === 1 ? partly : []) {
          memberLeft(p, e.nick);
          line(p.key, "event", e.at, nickSpan(e.nick), ` quit (${e.reason})`);
        }
        renderLists();
        renderMembers();
        break;
      }
      case "kicked": {
        const p = pane(roomKey(e.room));
        memberLeft(p, e.nick);
        line(p.key, "event", e.at, nickSpan(e.nick), ` was kicked by ${e.by} (${e.reason})`);
        renderLists();
        renderMembers();
        break;
      }
      case "renamed":
        for (const p of membersOf(e.old)) {
          const m = p.members.get(e.old.toLowerCase());
          p.members.delete(e.old.toLowerCase());
          p.members.set(e.new.toLowerCase(), { ...m, nick: e.new });
          line(p.key, "event", e.at, nickSpan(e.old), " is now known as ", nickSpan(e.new));
        }
        renderMembers();
        break;
      case "nick_changed":
        for (const p of membersOf(e.old)) {
          const m = p.members.get(e.old.toLowerCase());
          p.members.delete(e.old.toLowerCase());
          p.members.set(e.new.toLowerCase(), { ...m, nick: e.new });
        }
        setMe(e.new);
        localStorage.setItem(NICK_KEY, e.new);
        notice(`You are now ${e.new}`, "notice", e.at);
        renderMembers();
        break;
      case "left": {
        const p = pane(roomKey(e.room));
        p.joined = false;
        olderCancelled(p.key);
        p.members.clear();
        p.count = 0;
        line(p.key, "notice", e.at, `You left ${p.key}`);
        if (current === p.key) {
          const next = [...panes.values()].find((q) => q.joined);
          if (next) select(next.key);
        }
        renderLists();
        askRooms(true);
        break;
      }
      case "topic_changed": {
        const p = pane(roomKey(e.room));
        p.topic = e.text;
        line(p.key, "event", e.at, nickSpan(e.by), ` set the topic: ${e.text}`);
        if (current === p.key) ui.topic.textContent = e.text;
        break;
      }
      case "topic_is": {
        const p = pane(roomKey(e.room));
        p.topic = e.text;
        notice(e.text ? `Topic for ${p.key}: ${e.text}` : `No topic for ${p.key}`, "notice", e.at);
        if (current === p.key) ui.topic.textContent = e.text;
        break;
      }
      case "room_list":
        allRooms = e.rooms.map((r) => [r[0], r[1]]);
        // The counts of the rooms this page is in, fresh: those of members it never heard of leaving too.
        for (const [room, count] of allRooms) {
          const p = panes.get(roomKey(room));
          if (p && p.joined && count >= p.members.size) p.count = count;
        }
        if (roomListAsked > 0) {
          roomListAsked -= 1;
        } else {
          notice(`Rooms (${e.rooms.length}): ` + e.rooms.map((r) => `${r[0]} (${r[1]})`).join(", "), "notice", e.at);
        }
        renderLists();
        renderMembers();
        break;
      case "member_list": {
        const p = pane(roomKey(e.room));
        if (p.joined) knowMembers(p, e.members, e.members.length);
        notice(`In ${p.key} (${e.members.length}): ` + e.members.map((m) => m.nick).join(", "), "notice", e.at);
        renderLists();
        renderMembers();
        break;
      }
      case "notice":
        notice(NOTICES[e.code] || e.code, "notice", e.at);
        if (e.code === "bye") quitting = true;
        break;
      case "address_banned":
        notice(`Banned ${e.address}`, "notice", e.at);
        break;
      case "address_unbanned":
        notice(`Unbanned ${e.address}`, "notice", e.at);
        break;
      case "not_in":
        olderCancelled(roomKey(e.room));
        notice(ERRORS.not_in(e), "error", e.at);
        break;
      case "older_lines":
        olderLines(e);
        break;
      case "pong":
        break;
      default:
        if (ERRORS[e.type]) {
          notice(ERRORS[e.type](e), "error", e.at);
        } else if (typeof e.text === "string") {
          notice(e.text, "notice", e.at);
        }
    }
  }

  function send(obj) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(obj));
      return true;
    }
    notice("Not connected: that was not sent.", "error");
    return false;
  }

  function askRooms(quiet) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    if (quiet) roomListAsked += 1;
    socket.send(JSON.stringify({ type: "rooms" }));
  }

  function command(text) {
    const here = current || "#lobby";
    const inRoom = isRoom(here);
    const target = inRoom ? { room: here } : { nick: pane(here).nick };
    if (!text.startsWith("/") || text.startsWith("//")) {
      const body = text.startsWith("//") ? text.slice(1) : text;
      return send(inRoom ? { type: "say", room: here, text: body } : { type: "msg", nick: target.nick, text: body });
    }
    const [word, ...rest] = text.slice(1).split(" ");
    const arg = rest.join(" ").trim();
    const first = arg.split(" ")[0];
    const after = arg.slice(first.length).trim();
    switch (word.toLowerCase()) {
      case "help":
        for (const h of HELP) notice(h, "help");
        return true;
      case "me":
        return arg ? send({ type: "me", ...target, text: arg }) : usage("/me TEXT");
      case "nick":
        return first ? send({ type: "nick", nick: first }) : usage("/nick NAME");
      case "join":
        return first ? send({ type: "join", room: first }) : usage("/join ROOM");
      case "part":
      case "leave":
        return send({ type: "part", room: first || here, reason: after || "leaving" });
      case "msg":
      case "query":
        if (!first) return usage("/msg NICK [TEXT]");
        if (!after) {
          openConversation(first);
          return true;
        }
        return send({ type: "msg", nick: first, text: after });
      case "who":
        return inRoom ? send({ type: "who", room: first || here }) : usage("/who in a room");
      case "rooms":
      case "list":
        return send({ type: "rooms" });
      case "topic":
        return inRoom ? send({ type: "topic", room: here, text: arg || null }) : usage("/topic in a room");
      case "away":
        return send({ type: "away", text: arg });
      case "pass":
        return arg ? send({ type: "pass", password: arg }) : usage("/pass SECRET");
      case "oper":
        return after ? send({ type: "oper", name: first, password: after }) : usage("/oper NAME PASSWORD");
      case "kick":
        return first ? send({ type: "kick", nick: first, reason: after || "no reason given" }) : usage("/kick NICK [REASON]");
      case "ban":
        return first ? send({ type: "ban", nick: first }) : usage("/ban NICK");
      case "unban":
        return first ? send({ type: "unban", address: first }) : usage("/unban ADDRESS");
      case "quit":
        quitting = true;
        return send({ type: "quit", reason: arg || "leaving" });
      default:
        notice(`Unknown command: /${word} (try /help)`, "error");
        return true;
    }
  }

  function usage(text) {
    notice(`Usage: ${text}`, "error");
    return true;
  }

  function banner(text, kind) {
    ui.banner.textContent = text;
    ui.banner.className = kind;
    ui.banner.hidden = !text;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    // The nick of the last visit (or of before the reconnection) is asked for in the upgrade.
    const wanted = reconnecting.nick || localStorage.getItem(NICK_KEY);
    const query = wanted ? "?nick=" + encodeURIComponent(wanted) : "";
    socket = new WebSocket(`${scheme}//${location.host}/ws${query}`);
    socket.addEventListener("open", () => {
      attempt = 0;
      if (everConnected) {
        banner("Reconnected.", "ok");
        setTimeout(() => {
          if (ui.banner.className === "ok") banner("", "");
        }, 3000);
      } else {
        banner("", "");
      }
      everConnected = true;
      ui.app.classList.add("online");
      clearInterval(refreshTimer);
      refreshTimer = setInterval(() => askRooms(true), ROOM_REFRESH_MS);
    });
    socket.addEventListener("message", (msg) => {
      let e;
      try {
        e = JSON.parse(msg.data);
      } catch (err) {
        return;
      }
      handle(e);
    });
    socket.addEventListener("close", () => {
      ui.app.classList.remove("online");
      clearInterval(refreshTimer);
      if (quitting) {
        banner("You left the chat. Reload the page to come back.", "down");
        return;
      }
      if (!reconnecting.active) {
        reconnecting.active = true;
        reconnecting.nick = me;
        for (const p of panes.values()) if (isRoom(p.key) && p.joined) reconnecting.rooms.add(p.key);
        reconnecting.had = new Set(reconnecting.rooms);
      }
      for (const p of panes.values()) p.joined = false;
      olderCancelled(null);
      renderLists();
      const delay = BACKOFF[Math.min(attempt, BACKOFF.length - 1)] * (0.8 + Math.random() * 0.4);
      attempt += 1;
      const what = everConnected ? "Disconnected from the server." : "Cannot reach the server.";
      banner(`${what} Reconnecting in ${Math.round(delay / 1000)} s\u2026`, "down");
      setTimeout(connect, delay);
    });
  }

  ui.composer.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = ui.input.value;
    if (!text.trim()) return;
    if (command(text)) ui.input.value = "";
  });
  ui.joinForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const room = ui.joinInput.value.trim();
    if (room && send({ type: "join", room })) ui.joinInput.value = "";
  });
  ui.nickButton.addEventListener("click", () => {
    ui.input.value = "/nick ";
    ui.input.focus();
  });
  ui.partButton.addEventListener("click", () => {
    if (!current) return;
    if (isRoom(current)) {
      send({ type: "part", room: current, reason: "leaving" });
    } else {
      panes.delete(current);
      const next = [...panes.values()].find((q) => q.joined);
      if (next) select(next.key);
    }
  });
  ui.log.addEventListener("scroll", askOlder, { passive: true });
  ui.menuToggle.addEventListener("click", () => ui.app.classList.toggle("menu-open"));
  ui.membersToggle.addEventListener("click", () => ui.app.classList.toggle("members-open"));

  connect();
})();
