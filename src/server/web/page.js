// confab's page: the terminal client in a browser. One WebSocket to /ws,
// each text message one protocol line (docs/protocol.md); the login form
// answers the server's prompts; everything a user sent is shown as text,
// never as markup.
'use strict';

(() => {
  const WELCOME = 'Welcome to the greatest messaging application ever!';
  const USERNAME_PROMPT = 'Username: ';
  const PASSWORD_PROMPT = 'Password: ';
  const STAMPS = '!stamps';
  const STAMPS_ON = '!stamps on';
  const QUEUED = '!queued ';
  const QUEUED_END = '!queued end';
  const INVALID_USERNAME = 'Invalid Username. Please try again';
  const INVALID_COMMAND = 'Error. Invalid command';
  const HELP_HINT = ' (type help for the list of commands)';
  const NO_OTHERS = 'No other users are online';
  const NO_OTHERS_SINCE = 'No other users since then';
  const LOGIN_TIMED_OUT = 'Login timed out';
  const GOODBYE = 'Goodbye';
  // The server's lines that are failures, though not `Error.` lines.
  const FAILURES = [
    'Invalid Username.',
    'Invalid Password.',
    'Your account is blocked',
    'Your message could not be delivered',
    'This user is already logged in',
    'Your account has been removed',
  ];
  const NAME_COLOURS = 8;
  const HISTORY_MAX = 500;
  const LOG_MAX = 5000;

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'),
    log: $('log'),
    login: $('login'),
    username: $('username'),
    password: $('password'),
    loginButton: $('login-button'),
    loginError: $('login-error'),
    drop: $('drop'),
    dropReason: $('drop-reason'),
    reconnect: $('reconnect'),
    compose: $('compose'),
    input: $('input'),
    people: $('people'),
    peopleCount: $('people-count'),
    peopleNone: $('people-none'),
  };

  const state = {
    socket: null,
    // 'closed', 'connecting', 'login' (at the prompts) or 'chat'.
    phase: 'closed',
    // Whether the answer to `!stamps` is still to come (prompts before it
    // are not answered).
    stampsPending: false,
    // The prompt the server waits on: 'username', 'password' or null.
    prompt: null,
    // The form was submitted: answer the prompts from it as they come.
    wantLogin: false,
    // The username sent at the last prompt, and the one logged in.
    typedName: null,
    me: null,
    // Whether the session ever got in (the conversation has begun).
    began: false,
    online: new Set(),
    // Replies awaited to `whoelse` / `whoelsesince` sent, oldest first:
    // { kind: 'whoelse' | 'since', shown, started }.
    replies: [],
    // Offline messages shown under the current away marker.
    away: 0,
    lastLine: '',
    history: [],
    historyAt: 0,
    draft: '',
  };

  // ---- what a line is and how it looks ----

  /** Whether `word` can be a username: one word, not empty. */
  const isName = (word) => word.length > 0 && !/[ \t:]/.test(word);

  /** The colour class of a name: FNV-1a of its bytes, as the terminal. */
  const colourOf = (name) => {
    let hash = 0xcbf29ce484222325n;
    for (const byte of new TextEncoder().encode(name)) {
      hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
    }
    return 'c' + Number(hash % BigInt(NAME_COLOURS));
  };

  const pad = (n) => String(n).padStart(2, '0');
  const hhmm = (date) => pad(date.getHours()) + ':' + pad(date.getMinutes());
  const nowStamp = () => hhmm(new Date());

  /** When a message was sent: `HH:MM` today, the date before that. */
  const sentStamp = (date) => {
    const today = new Date();
    if (date.toDateString() === today.toDateString()) {
      return hhmm(date);
    }
    return date.getFullYear() + '-' + pad(date.getMonth() + 1) + '-' + pad(date.getDate()) + ' ' + hhmm(date);
  };

  const isFailure = (line) => line.startsWith('Error.') || FAILURES.some((f) => line.startsWith(f));

  /** What a server line is: a message, a notice or an error. */
  const entryOf = (line) => {
    if (isFailure(line)) {
      return { kind: 'error', text: line };
    }
    const colon = line.indexOf(': ');
    if (colon > 0 && isName(line.slice(0, colon))) {
      return { kind: 'message', from: line.slice(0, colon), text: line.slice(colon + 2) };
    }
    return { kind: 'notice', text: line };
  };

  const span = (className, text) => {
    const element = document.createElement('span');
    element.className = className;
    element.textContent = text;
    return element;
  };

  const nameSpan = (name) => span('name ' + colourOf(name), name);

  /** Adds one line to the conversation, stamped `stamp`. */
  const show = (stamp, entry) => {
    const log = ui.log;
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    const item = document.createElement('li');
    item.className = 'entry';
    item.dataset.kind = entry.kind;
    item.append(span('stamp', stamp), document.createTextNode(' '));
    switch (entry.kind) {
      case 'message':
      case 'queued':
        item.append(nameSpan(entry.from), document.createTextNode(': ' + entry.text));
        break;
      case 'sent':
        item.append(
          span('me', entry.me),
          document.createTextNode(' → '),
          entry.to === null ? document.createTextNode('everyone') : nameSpan(entry.to),
          document.createTextNode(': ' + entry.text),
        );
        break;
      case 'error':
        item.classList.add('error');
        item.append(document.createTextNode('! ' + entry.text + (entry.text === INVALID_COMMAND ? HELP_HINT : '')));
        break;
      case 'marker':
        item.classList.add('notice');
        item.append(span('away', entry.text));
        break;
      default:
        item.classList.add('notice');
        item.append(document.createTextNode('* ' + entry.text));
    }
    log.append(item);
    while (log.childElementCount > LOG_MAX) {
      log.firstElementChild.remove();
    }
    if (atBottom) {
      log.scrollTop = log.scrollHeight;
    }
  };

  const notice = (text) => show(nowStamp(), { kind: 'notice', text });

  // ---- the page's parts ----

  const setStatus = (text, className) => {
    ui.status.textContent = text;
    ui.status.className = 'status' + (className ? ' ' + className : '');
  };

  const loginMessage = (text, info) => {
    ui.loginError.textContent = text;
    ui.loginError.classList.toggle('info', Boolean(info));
  };

  /** Shows the form, for a prompt or for connecting again. */
  const showLogin = () => {
    ui.login.hidden = false;
    ui.compose.hidden = true;
    ui.drop.hidden = true;
    ui.username.readOnly = state.prompt === 'password';
    ui.loginButton.disabled = false;
    const field = ui.username.value && (state.prompt === 'password' || state.began) ? ui.password : ui.username;
    field.focus();
  };

  const renderPeople = () => {
    const names = [...state.online].sort();
    const items = names.map((name) => {
      const item = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'person ' + colourOf(name);
      button.textContent = name;
      button.title = 'message ' + name;
      button.addEventListener('click', () => {
        if (state.phase !== 'chat') {
          return;
        }
        ui.input.value = 'message ' + name + ' ';
        ui.input.focus();
        ui.input.setSelectionRange(ui.input.value.length, ui.input.value.length);
      });
      item.append(button);
      return item;
    });
    ui.people.replaceChildren(...items);
    ui.peopleCount.textContent = names.length ? '(' + names.length + ')' : '';
    ui.peopleNone.hidden = names.length > 0;
  };

  // ---- the wire ----

  const send = (line) => {
    if (state.socket && state.socket.readyState === WebSocket.OPEN) {
      state.socket.send(line);
      return true;
    }
    return false;
  };

  const connect = () => {
    if (state.socket) {
      return;
    }
    const url = (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host + '/ws';
    const socket = new WebSocket(url);
    state.socket = socket;
    state.phase = 'connecting';
    state.prompt = null;
    state.lastLine = '';
    setStatus('connecting…');
    socket.addEventListener('open', () => {
      state.phase = 'login';
      state.stampsPending = true;
      socket.send(STAMPS);
      setStatus('connected');
    });
    socket.addEventListener('message', (event) => {
      if (typeof event.data === 'string') {
        receive(event.data);
      }
    });
    socket.addEventListener('close', () => {
      if (state.socket === socket) {
        closed();
      }
    });
  };

  /** Answers the prompt the server waits on from the form, if asked to. */
  const answerPrompt = () => {
    if (!state.wantLogin) {
      return;
    }
    if (state.prompt === 'username') {
      state.typedName = ui.username.value.trim();
      state.prompt = null;
      send(state.typedName);
    } else if (state.prompt === 'password') {
      state.prompt = null;
      state.wantLogin = false;
      // Sent and forgotten: the page keeps no copy of a password.
      send(ui.password.value);
      ui.password.value = '';
    }
  };

  const receive = (line) => {
    if (state.phase === 'chat') {
      chatLine(line);
    } else {
      loginLine(line);
    }
  };

  /** A line before the welcome: prompts, refusals, the welcome itself. */
  const loginLine = (line) => {
    if (state.stampsPending) {
      if (line === STAMPS_ON || line === INVALID_USERNAME) {
        // The answer to `!stamps` (an older server's is the username
        // refusal): not for the user.
        state.stampsPending = false;
        return;
      }
      if (line === USERNAME_PROMPT) {
        // The prompt that came before the answer to `!stamps`.
        return;
      }
    }
    if (line === USERNAME_PROMPT || line === PASSWORD_PROMPT) {
      state.prompt = line === USERNAME_PROMPT ? 'username' : 'password';
      if (state.wantLogin) {
        answerPrompt();
      } else {
        showLogin();
      }
      return;
    }
    if (line === WELCOME) {
      welcome();
      return;
    }
    state.lastLine = line;
    // A refusal (wrong password, a ban, already logged in) or the login
    // timeout: beside the form. A password refused is typed again.
    state.wantLogin = false;
    loginMessage(line, !isFailure(line));
    if (isFailure(line)) {
      ui.password.value = '';
    }
  };

  const welcome = () => {
    state.phase = 'chat';
    state.me = state.typedName;
    state.began = true;
    state.away = 0;
    state.replies = [];
    state.online.clear();
    renderPeople();
    document.body.classList.remove('empty');
    loginMessage('');
    ui.login.hidden = true;
    ui.drop.hidden = true;
    ui.compose.hidden = false;
    ui.input.focus();
    setStatus('online as ' + state.me, 'online');
    notice(WELCOME);
    // For the list of who is online; its answer is not shown.
    state.replies.push({ kind: 'whoelse', shown: false, started: false });
    send('whoelse');
  };

  /** A line after the welcome. */
  const chatLine = (line) => {
    if (line === QUEUED_END) {
      if (state.away > 0) {
        show(nowStamp(), { kind: 'marker', text: 'end of offline messages' });
      }
      state.away = 0;
      return;
    }
    if (line.startsWith(QUEUED)) {
      const rest = line.slice(QUEUED.length);
      const space = rest.indexOf(' ');
      const entry = entryOf(rest.slice(space + 1));
      if (space > 0 && entry.kind === 'message') {
        if (state.away === 0) {
          show(nowStamp(), { kind: 'marker', text: 'while you were away' });
        }
        state.away += 1;
        const at = rest.slice(0, space);
        const stamp = /^[0-9]+$/.test(at) ? sentStamp(new Date(Number(at) * 1000)) : '--:--';
        show(stamp, { kind: 'queued', from: entry.from, text: entry.text });
        return;
      }
    }
    state.lastLine = line;
    if (reply(line)) {
      return;
    }
    presence(line);
    show(nowStamp(), entryOf(line));
  };

  /**
   * A line of the answer to a `whoelse` (the list of who is online) or a
   * `whoelsesince` sent: true if it was one and is dealt with.
   */
  const reply = (line) => {
    while (state.replies.length > 0) {
      const awaited = state.replies[0];
      const none = line === (awaited.kind === 'whoelse' ? NO_OTHERS : NO_OTHERS_SINCE);
      const name = isName(line) && line !== GOODBYE;
      if (awaited.started && !name) {
        // The answer is over (a `none` line begins the next one).
        state.replies.shift();
        continue;
      }
      if (!none && !name) {
        // Not the answer yet: a message or presence that came first.
        return false;
      }
      if (awaited.kind === 'whoelse') {
        if (!awaited.started) {
          state.online.clear();
        }
        if (name) {
          state.online.add(line);
        }
        renderPeople();
      }
      awaited.started = true;
      if (none) {
        state.replies.shift();
      }
      if (awaited.shown) {
        notice(line);
      }
      return true;
    }
    return false;
  };

  /** `X logged in` and `X logged out`: the list of who is online. */
  const presence = (line) => {
    for (const [end, online] of [[' logged in', true], [' logged out', false]]) {
      if (line.endsWith(end)) {
        const name = line.slice(0, -end.length);
        if (isName(name)) {
          if (online) {
            state.online.add(name);
          } else {
            state.online.delete(name);
          }
          renderPeople();
        }
      }
    }
  };

  /** The socket closed: say why, keep the conversation, offer a way back. */
  const closed = () => {
    const phase = state.phase;
    state.socket = null;
    state.phase = 'closed';
    state.prompt = null;
    state.stampsPending = false;
    state.replies = [];
    state.online.clear();
    renderPeople();
    setStatus('disconnected', 'offline');
    if (phase === 'chat') {
      const reason = state.lastLine === GOODBYE ? 'You logged out' : state.lastLine || 'The connection was lost';
      notice('Connection closed by server');
      ui.dropReason.textContent = reason;
      ui.compose.hidden = true;
      ui.login.hidden = true;
      ui.drop.hidden = false;
      ui.reconnect.focus();
      return;
    }
    // Closed at the prompts (a ban, the login timeout) or never opened:
    // the form connects again when it is sent.
    if (phase === 'connecting') {
      loginMessage('Cannot reach the server', false);
    } else if (state.lastLine === LOGIN_TIMED_OUT) {
      loginMessage(LOGIN_TIMED_OUT + ': log in to connect again', true);
    }
    state.wantLogin = false;
    ui.login.hidden = false;
    ui.username.readOnly = false;
  };

  const reconnect = () => {
    ui.username.value = state.me || ui.username.value;
    loginMessage('');
    showLogin();
    connect();
  };

  // ---- what the person does ----

  ui.login.addEventListener('submit', (event) => {
    event.preventDefault();
    const atPassword = state.prompt === 'password';
    if (!atPassword && ui.username.value.trim() === '') {
      loginMessage('Enter your username');
      ui.username.focus();
      return;
    }
    if (ui.password.value === '') {
      loginMessage('Enter your password');
      ui.password.focus();
      return;
    }
    loginMessage('');
    state.wantLogin = true;
    if (state.socket) {
      answerPrompt();
    } else {
      connect();
    }
  });

  ui.reconnect.addEventListener('click', reconnect);

  document.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !ui.drop.hidden && event.target !== ui.reconnect) {
      event.preventDefault();
      reconnect();
    }
  });

  /** What the page shows of a line the person sent: as sent. */
  const echo = (line) => {
    const text = line.trim();
    const message = /^message +([^ ]+) +(.+)$/.exec(text);
    if (message) {
      show(nowStamp(), { kind: 'sent', me: state.me, to: message[1], text: message[2] });
      return;
    }
    const broadcast = /^broadcast +(.+)$/.exec(text);
    if (broadcast) {
      show(nowStamp(), { kind: 'sent', me: state.me, to: null, text: broadcast[1] });
      return;
    }
    const words = text.split(/ +/);
    if (words[0] === 'whoelse' && words.length === 1) {
      state.replies.push({ kind: 'whoelse', shown: true, started: false });
    } else if (words[0] === 'whoelsesince' && words.length === 2 && /^[0-9]+$/.test(words[1])) {
      state.replies.push({ kind: 'since', shown: true, started: false });
    }
  };

  ui.compose.addEventListener('submit', (event) => {
    event.preventDefault();
    const line = ui.input.value;
    if (line.trim() === '' || state.phase !== 'chat') {
      return;
    }
    if (!send(line)) {
      return;
    }
    if (state.history[state.history.length - 1] !== line) {
      state.history.push(line);
      if (state.history.length > HISTORY_MAX) {
        state.history.shift();
      }
    }
    state.historyAt = state.history.length;
    state.draft = '';
    ui.input.value = '';
    echo(line);
  });

  ui.input.addEventListener('keydown', (event) => {
    if (event.key !== 'ArrowUp' && event.key !== 'ArrowDown') {
      return;
    }
    event.preventDefault();
    const history = state.history;
    if (state.historyAt === history.length) {
      state.draft = ui.input.value;
    }
    if (event.key === 'ArrowUp') {
      state.historyAt = Math.max(0, state.historyAt - 1);
    } else {
      state.historyAt = Math.min(history.length, state.historyAt + 1);
    }
    ui.input.value = state.historyAt === history.length ? state.draft : history[state.historyAt];
    ui.input.setSelectionRange(ui.input.value.length, ui.input.value.length);
  });

  renderPeople();
  ui.username.focus();
  connect();
})();
