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
