"""The Redis key schema, in one place (documented in docs/REDIS_KEYS.md).

Per-mobile keys carry the mobile in a hash tag ({13800000000}) so that every multi-key step
for one mobile lands in one Redis Cluster slot.
"""


def captcha_key(captcha_id: str) -> str:
    """CAPTCHA text for one image id; deleted by the first SMS request that uses it."""
    return f"image_code:{captcha_id}"


def sms_code_key(mobile: str) -> str:
    """The SMS code last sent to a mobile."""
    return f"sms:{{{mobile}}}:code"


def sms_guard_key(mobile: str) -> str:
    """The resend guard: present while the mobile may not be sent another SMS."""
    return f"sms:{{{mobile}}}:guard"


def login_failures_mobile_key(mobile: str) -> str:
    """Login attempts not yet proven right for one mobile (fixed window)."""
    return f"login:{{{mobile}}}:attempts"


def login_failures_ip_key(ip: str) -> str:
    """Login attempts not yet proven right from one client IP (fixed window)."""
    return f"login:ip:{ip}:attempts"


def session_key(session_id_digest: str) -> str:
    """A login session, by the SHA-256 of its cookie value."""
    return f"session:{session_id_digest}"
