"""Every SMTP/LMTP reply bccd sends, in one catalogue (RFC 5321 code + RFC 3463 enhanced code).

No reply text is built anywhere else; code that needs a reason attaches it with
``Reply.with_text`` (the reason is always a short, fixed or sanitised line — internals go
to the log, not to the peer). The replies aiosmtpd builds itself pass through
``with_enhanced_code``, which maps each known aiosmtpd text to its entry here (and gives
any other an enhanced code), so the peer never sees a reply without one (SPEC §3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    enhanced: str
    text: str

    def __str__(self) -> str:
        if not self.enhanced:
            return f"{self.code} {self.text}"
        return f"{self.code} {self.enhanced} {self.text}"

    @property
    def is_temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500

    def with_text(self, text: str) -> Reply:
        clean = " ".join(text.replace("\r", " ").replace("\n", " ").split())[:400]
        return Reply(self.code, self.enhanced, clean)


# 2xx
OK = Reply(250, "2.0.0", "OK")
SENDER_OK = Reply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
STORED = Reply(250, "2.0.0", "Message accepted")
RESET_OK = Reply(250, "2.0.0", "Reset OK")
NOOP_OK = Reply(250, "2.0.0", "OK")
XFORWARD_OK = Reply(250, "2.0.0", "XFORWARD OK")
VRFY_NO = Reply(252, "2.5.2", "Cannot VRFY user, but will accept message")
BYE = Reply(221, "2.0.0", "Bye")
READY_TLS = Reply(220, "2.0.0", "Ready to start TLS")
START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")

# 4xx — temporary: the client keeps the message and retries
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, try again later")
OVERLOADED = Reply(421, "4.3.2", "Server busy, try again later")
CLIENT_LIMIT = Reply(421, "4.7.0", "Too many connections or commands from your address")
TOO_MANY_COMMANDS = Reply(421, "4.7.0", "Too many commands in one session, closing connection")
TOO_MANY_BOGUS = Reply(421, "4.7.0", "Too many unrecognized commands, closing connection")
TIMEOUT = Reply(421, "4.4.2", "Timeout, closing connection")
TOO_SLOW = Reply(421, "4.4.2", "Data arriving too slowly, closing connection")
SESSION_TOO_LONG = Reply(421, "4.4.2", "Session time limit reached, closing connection")
TEMP_FAILURE = Reply(451, "4.3.0", "Temporary failure, please try again later")
DNS_TEMP_FAILURE = Reply(451, "4.7.0", "Temporary DNS failure while checking the sender")
PROCESSING_TIMEOUT = Reply(451, "4.3.0", "Message took too long to process, try again later")
STORAGE_FULL = Reply(452, "4.3.1", "Insufficient system storage")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available")

# 5xx — permanent policy decisions
SYNTAX_ERROR = Reply(500, "5.5.2", "Syntax error, command unrecognized")
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")
NOT_ASCII = Reply(500, "5.5.2", "Command must be ASCII")
LMTP_NEEDS_LHLO = Reply(500, "5.5.1", "This is an LMTP server: use LHLO")
PARAM_SYNTAX = Reply(501, "5.5.4", "Syntax error in parameters or arguments")
BAD_HELO = Reply(501, "5.5.4", "Invalid HELO/EHLO name")
XFORWARD_SYNTAX = Reply(501, "5.5.4", "Invalid XFORWARD attribute")
NOT_IMPLEMENTED = Reply(502, "5.5.1", "Command not implemented")
BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")
NEED_HELO = Reply(503, "5.5.1", "Send EHLO first")
NEED_MAIL = Reply(503, "5.5.1", "Need MAIL command")
NEED_RCPT_FIRST = Reply(503, "5.5.1", "Need RCPT command")
NESTED_MAIL = Reply(503, "5.5.1", "Nested MAIL command")
XFORWARD_IN_TRANSACTION = Reply(503, "5.5.1", "XFORWARD is not allowed inside a mail transaction")
PARAM_NOT_IMPLEMENTED = Reply(504, "5.5.4", "Command parameter not implemented")
AUTH_NOT_SUPPORTED = Reply(502, "5.5.1", "Authentication not supported")
TLS_REQUIRED = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
XFORWARD_DENIED = Reply(550, "5.7.0", "XFORWARD is not permitted from your address")
RELAY_DENIED = Reply(550, "5.7.1", "Relaying denied: this server only accepts mail for its own domain")
UNKNOWN_RECIPIENT = Reply(550, "5.1.1", "No such Smart Bcc address")
SENDER_REFUSED = Reply(550, "5.7.1", "Sender not accepted")
NOT_AUTHENTIC = Reply(550, "5.7.26", "Message failed DMARC authentication for the From domain")
TOO_BIG = Reply(552, "5.3.4", "Message too big")
SIZE_DECLARED_TOO_BIG = Reply(552, "5.3.4", "Declared message size exceeds the fixed maximum")
HEADER_TOO_BIG = Reply(552, "5.3.4", "Message header block too big")
BAD_ADDRESS_SYNTAX = Reply(553, "5.1.3", "Invalid address syntax")
BAD_SENDER_SYNTAX = Reply(553, "5.1.7", "Invalid sender address syntax")
SMTPUTF8_REQUIRED = Reply(553, "5.6.7", "SMTPUTF8 required for this address")
EARLY_TALKER = Reply(554, "5.5.0", "Protocol error: command sent before the greeting")
TLS_REFUSED = Reply(554, "5.7.0", "Command refused: the TLS handshake failed")
NEED_RCPT = Reply(554, "5.5.1", "No valid recipients")
TOO_COMPLEX = Reply(554, "5.6.0", "Message structure too complex")
BARE_LINE_ENDING = Reply(
    554, "5.6.0", "Bare CR or LF next to a line holding only a dot is not accepted (RFC 5321 2.3.8)")
NUL_IN_DATA = Reply(554, "5.6.0", "NUL characters are not accepted in a message")
PARAMS_NOT_RECOGNIZED = Reply(555, "5.5.4", "MAIL/RCPT parameters not recognized or not implemented")


# --- the replies aiosmtpd builds itself ----------------------------------------------------

_HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}(?: |$)")
_DEFAULT_ENHANCED = {
    "211": "2.0.0", "214": "2.0.0", "221": "2.0.0", "235": "2.7.0", "250": "2.0.0",
    "251": "2.1.5", "252": "2.5.2", "421": "4.3.2", "450": "4.2.0", "451": "4.3.0",
    "452": "4.3.1", "454": "4.7.0", "500": "5.5.2", "501": "5.5.4", "502": "5.5.1",
    "503": "5.5.1", "504": "5.5.4", "530": "5.7.0", "534": "5.7.9", "535": "5.7.8",
    "538": "5.7.11", "550": "5.0.0", "551": "5.1.6", "552": "5.3.4", "553": "5.1.3",
    "554": "5.0.0", "555": "5.5.4",
}
# aiosmtpd texts that say more (or less) than a peer needs: replaced by catalogue entries
_REWRITE: dict[str, Reply] = {
    "552 Error: Too much mail data": TOO_BIG,
    "552 Error: message size exceeds fixed maximum message size": SIZE_DECLARED_TOO_BIG,
    "500 Line too long (see RFC5321 4.5.3.1.6)": LINE_TOO_LONG,
    "500 Command line too long": LINE_TOO_LONG,
    "500 Error: bad syntax": SYNTAX_ERROR,
    "500 Error: strict ASCII mode": NOT_ASCII,
    "500 Error: Cannot describe error": TEMP_FAILURE,
    "503 Error: need RCPT command": NEED_RCPT_FIRST,
    "503 Error: need MAIL command": NEED_MAIL,
    "503 Error: nested MAIL command": NESTED_MAIL,
    "503 Error: send HELO first": NEED_HELO,
    "503 Error: send EHLO first": NEED_HELO,
    "553 5.1.3 Error: malformed address": BAD_ADDRESS_SYNTAX,
    "555 MAIL FROM parameters not recognized or not implemented": PARAMS_NOT_RECOGNIZED,
    "555 RCPT TO parameters not recognized or not implemented": PARAMS_NOT_RECOGNIZED,
    "554 Command refused due to lack of security": TLS_REFUSED,
    "530 Must issue a STARTTLS command first": TLS_REQUIRED,
    "454 TLS not available": TLS_UNAVAILABLE,
    "502 EXPN not implemented": NOT_IMPLEMENTED,
    "502 5.5.1 Too many unrecognized commands, goodbye.": TOO_MANY_BOGUS,
    "421 Too many connections": CLIENT_LIMIT,
    "220 Ready to start TLS": READY_TLS,
    "221 Bye": BYE,
    "250 OK": OK,
}
_REWRITE_PATTERNS: tuple[tuple[re.Pattern[str], Reply], ...] = (
    (re.compile(r"421 4\.7\.0 \S+ sent too many times"), TOO_MANY_COMMANDS),
    (re.compile(r'500 Error: command ".*" not recognized'), SYNTAX_ERROR),
    (re.compile(r"500 Error: \(.*"), TEMP_FAILURE),    # an exception text: never shown
    (re.compile(r"501 Syntax: .*"), PARAM_SYNTAX),
    (re.compile(r"501 Error: .*"), PARAM_SYNTAX),
    (re.compile(r"502 Could not VRFY .*"), VRFY_NO),
)


def with_enhanced_code(line: str) -> str:
    """The catalogue's version of a reply line aiosmtpd built (RFC 2034 §3).

    Known aiosmtpd texts become their catalogue entry (no echo of the client's command,
    no exception text); any other final line gets the enhanced code of its class. The
    greeting, 354, 334 and the continuation lines of EHLO are left as they are.
    """
    known = _REWRITE.get(line)
    if known is not None:
        return str(known)
    for pattern, reply in _REWRITE_PATTERNS:
        if pattern.fullmatch(line):
            return str(reply)
    if len(line) < 3 or not line[:3].isdigit() or _HAS_ENHANCED.match(line):
        return line
    code, sep = line[:3], line[3:4]
    if sep == "-" or code in ("220", "354", "334") or line == "250 HELP":
        return line
    enhanced = _DEFAULT_ENHANCED.get(code)
    if enhanced is None:
        return line
    text = line[4:].removeprefix("Error: ")
    return f"{code} {enhanced} {text}".rstrip()
