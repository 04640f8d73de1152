"""The Redis key schema, in one place (documented in docs/REDIS_KEYS.md).

Per-mobile keys carry the mobile in a hash tag ({13800000000}) so that every multi-key step
for one mobile lands in one Redis Cluster slot.
"""


def captcha_key(captcha_id: str) -> str:
    """CAPTCHA text for one image id; deleted by the first SMS request that uses it."""
    return f"image_code:{captcha_id}"


def captcha_owner_key(captcha_id: str) -> str:
    """Who asked for a CAPTCHA id first (a digest of its XSRF token): only they may renew it."""
    return f"image_code:{captcha_id}:owner"


def sms_code_key(mobile: str) -> str:
    """The SMS code last sent to a mobile."""
    return f"sms:{{{mobile}}}:code"


def sms_guard_key(mobile: str) -> str:
    """The resend guard: present while the mobile may not be sent another SMS."""
    return f"sms:{{{mobile}}}:guard"


def sms_freed_key(mobile: str) -> str:
    """Present while a failed receipt has freed the mobile early (lifted its resend guard):
    for a code lifetime, during which no other receipt may do so."""
    return f"sms:{{{mobile}}}:freed"


def sms_mobile_hourly_key(mobile: str) -> str:
    """SMS sent to one mobile in the current hour window."""
    return f"sms:{{{mobile}}}:hourly"


def sms_mobile_daily_key(mobile: str) -> str:
    """SMS sent to one mobile in the current day window."""
    return f"sms:{{{mobile}}}:daily"


GLOBAL_HOURLY = "sms:global:hourly"


def sms_global_hourly_key() -> str:
    """SMS sent by the whole deployment in the current hour window (the budget)."""
    return GLOBAL_HOURLY


def sms_ip_hourly_key(ip: str) -> str:
    """SMS requested from one client IP in the current hour window. Its hash tag is the budget
    key's whole name, which Redis hashes like the untagged budget key: the two are in one
    slot, so one script takes the address's count and the budget together."""
    return f"sms:ip:{{{GLOBAL_HOURLY}}}:{ip}:hourly"


# Every fraud key carries the one hash tag {fraud}: a send's three segments (and the record
# of them kept for its conversion) are admitted, given back and converted by one script each,
# so they must share a Redis Cluster slot. That puts all fraud keys on one node; every send
# already touches the one global budget key, and at SMS rates one node is far from its limit.
FRAUD_PREFIX = "fraud:{fraud}:"


def fraud_counts_key(segment: str) -> str:
    """Rolling sends and conversions of one fraud segment (blk:…, net:…, ip:…), per bucket."""
    return f"{FRAUD_PREFIX}{segment}:counts"


def fraud_state_key(segment: str) -> str:
    """The breaker of one fraud segment while it is not normal (elevated or blocked)."""
    return f"{FRAUD_PREFIX}{segment}:state"


def segment_of_state_key(key: str) -> str:
    """fraud:{fraud}:blk:1381234:state -> blk:1381234."""
    return key[len(FRAUD_PREFIX) : -len(":state")]


def fraud_sent_key(mobile: str) -> str:
    """The fraud keys of the segments of the send that delivered the mobile's current code
    (JSON list), for its conversion; in the fraud slot, so one script converts them."""
    return f"{FRAUD_PREFIX}sent:{mobile}"


def pow_used_key(nonce: str) -> str:
    """A redeemed proof-of-work challenge (replay protection), until it would have expired."""
    return f"pow:{{{nonce}}}:used"


def captcha_ip_minute_key(ip: str) -> str:
    """CAPTCHAs (image or audio) served to one client IP in the current minute window."""
    return f"captcha:ip:{{{ip}}}:minute"


def count_ip_minute_key(ip: str) -> str:
    """ "Is this mobile/username taken?" lookups from one client IP in the current minute."""
    return f"count:ip:{{{ip}}}:minute"


def login_ip_failures_key(ip: str) -> str:
    """Login attempts not yet proven right from one client IP, any account (fixed window)."""
    return f"login:ip:{{{ip}}}:failures"


def login_pair_failures_key(account: str, ip: str) -> str:
    """Unproven login attempts on one account from one client IP (fixed window).

    `account` is login_throttle.account_key(): the resolved user, whatever the spelling.
    """
    return f"login:{{{account}}}:ip:{ip}:failures"


def login_account_failures_key(account: str) -> str:
    """Unproven login attempts on one account from any address (its CAPTCHA threshold)."""
    return f"login:{{{account}}}:failures"


def login_global_failures_key() -> str:
    """Unproven password logins on every account from every address (a rolling window in
    buckets): past its threshold every password login needs a CAPTCHA."""
    return "login:global:failures"


def session_key(user_id: int, session_id_digest: str) -> str:
    """A login session, by its user and the SHA-256 of its cookie value."""
    return f"session:{{{user_id}}}:{session_id_digest}"


def session_index_key(user_id: int) -> str:
    """Hash of one user's sessions: digest -> expiry (Unix s), so all of them can be ended.

    Shares the {user_id} hash tag with the user's session keys: one slot in a cluster.
    """
    return f"session:{{{user_id}}}:index"


def token_family_key(user_id: int, family_id: str) -> str:
    """A refresh-token family: its user, the digest of its current token, those it replaced.

    Shares the {user_id} hash tag with the user's sessions, so that ending every session of a
    user revokes every family of it in the same script, on one slot.
    """
    return f"tokens:{{{user_id}}}:family:{family_id}"


def token_family_index_key(user_id: int) -> str:
    """Hash of one user's refresh-token families: family id -> expiry (Unix s)."""
    return f"tokens:{{{user_id}}}:index"


def send_record_key(send_id: str) -> str:
    """One send's delivery record (provider, message id, channel, status, timestamps)."""
    return f"sms:send:{{{send_id}}}"


def provider_message_key(provider: str, message_id: str) -> str:
    """Index from a provider's message id to our send id, for matching its receipts."""
    return f"sms:msg:{provider}:{message_id}"


def sms_sends_of_key(mobile: str) -> str:
    """The send ids of the mobile's recent sends, newest first (the console's lookup)."""
    return f"sms:{{{mobile}}}:sends"


def sms_global_spend_key() -> str:
    """Yuan (in costs.UNITS) the whole deployment reserved for sends in the current hour
    window (limits.sms_global_yuan_per_hour). Tagged like the per-IP keys: the budget's slot,
    so one script takes the address's count, the budget and the spend together."""
    return f"sms:spend:{{{GLOBAL_HOURLY}}}:hourly"


def ops_minute_key(minute: int) -> str:
    """What happened to sends in one minute (Unix time // 60), for the operator console: a
    hash of counts. One hash tag for all of them: the console reads hours of them at once."""
    return f"ops:{{ops}}:{minute}"


# The registered numbers (services/accounts/registered.py): four keys under one hash tag, so
# that each of its scripts touches one Redis Cluster slot.
REGISTERED = "registered"


def registered_set_key() -> str:
    """Set of the mobiles registered in the user table, plus the sentinel member "" (an
    evicted set is then missing, never mistaken for an empty one)."""
    return f"registered:{{{REGISTERED}}}:set"


def registered_ready_key() -> str:
    """Present while the set is exact (a rebuild completed and nothing has undone it)."""
    return f"registered:{{{REGISTERED}}}:ready"


def registered_epoch_key() -> str:
    """Counter raised by every removal from the set and every rebuild's start: a rebuild
    that saw it change is not marked ready, an add that saw it change is not made."""
    return f"registered:{{{REGISTERED}}}:epoch"


def registered_rebuild_key() -> str:
    """The rebuild lock (its token while one runs), or a pause after a failed rebuild."""
    return f"registered:{{{REGISTERED}}}:rebuild"
