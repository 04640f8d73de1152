"""Our hashes, CSRF tokens and session auth hashes are the ones the real frameworks accept:
checked with Django's and Werkzeug's own functions, not with copies of them."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import django
import pytest
from django.conf import settings
from werkzeug.security import check_password_hash, generate_password_hash

from services.accounts.passwords import PasswordHasher
from services.config import HostAppConfig
from services.hostapp.django_host import DjangoHost, csrf_secret

SECRET = "django-insecure-test-secret-key-0123456789abcdef"

if not settings.configured:
    settings.configure(SECRET_KEY=SECRET, USE_TZ=True)  # Django's default PASSWORD_HASHERS
    django.setup()

from django.contrib.auth.hashers import (  # noqa: E402
    Argon2PasswordHasher,
    check_password,
    make_password,
)
from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret  # noqa: E402
from django.utils.crypto import salted_hmac  # noqa: E402


def hash_with(scheme: str, password: str) -> str:
    async def run():
        with ThreadPoolExecutor(1) as pool:
            hasher = PasswordHasher(pool, scheme=scheme, werkzeug_iterations=60000)
            with hasher.place() as place:
                return await hasher.hash(place, password)

    return asyncio.run(run())


def verdict_of(scheme: str, stored: str, password: str):
    async def run():
        with ThreadPoolExecutor(1) as pool:
            hasher = PasswordHasher(pool, scheme=scheme)
            with hasher.place() as place:
                return await hasher.verify(place, stored, password)

    return asyncio.run(run())


def test_a_hash_we_write_for_meiduo_is_one_django_checks_out_of_the_box():
    stored = hash_with("django", "s3cret-pass")
    assert stored.startswith("argon2$argon2id$")
    assert check_password("s3cret-pass", stored)
    assert not check_password("wrong-pass", stored)


def test_a_django_that_lists_argon2_first_keeps_the_hashes_we_write_for_meiduo():
    """Django's login rewrites a hash whose hasher is not PASSWORD_HASHERS[0] or whose
    parameters are not that hasher's (must_update): ours are Argon2PasswordHasher's own."""
    stored = hash_with("django", "s3cret-pass")
    argon2_first = Argon2PasswordHasher()
    assert argon2_first.verify("s3cret-pass", stored)
    assert not argon2_first.must_update(stored)


def test_a_hash_we_write_for_ihome_and_news_is_one_werkzeug_checks():
    stored = hash_with("werkzeug", "s3cret-pass")
    assert stored.startswith("pbkdf2:sha256:60000$")
    assert check_password_hash(stored, "s3cret-pass")
    assert not check_password_hash(stored, "wrong-pass")


@pytest.mark.parametrize(
    "scheme, stored",
    [
        ("django", make_password("s3cret-pass")),  # Django's pbkdf2_sha256 default
        ("django", make_password("s3cret-pass", hasher="argon2")),
        ("werkzeug", generate_password_hash("s3cret-pass")),  # Werkzeug 3's scrypt default
        ("werkzeug", generate_password_hash("s3cret-pass", method="pbkdf2:sha256:50000")),
    ],
    # Stable names (a hash's salt is random): pytest-xdist's workers must collect alike.
    ids=["django-pbkdf2", "django-argon2", "werkzeug-scrypt", "werkzeug-pbkdf2"],
)
def test_the_host_apps_own_hashes_verify_here_and_are_kept_as_they_are(scheme, stored):
    """Rewriting a hash the host verifies would change Django's session auth hash and end the
    user's sessions in the host app: it is left alone."""
    verdict = verdict_of(scheme, stored, "s3cret-pass")
    assert verdict.ok and not verdict.needs_rehash
    assert not verdict_of(scheme, stored, "wrong-pass").ok


def test_our_plain_argon2_hashes_are_rewritten_in_the_host_format_on_login():
    stored = hash_with("argon2", "s3cret-pass")  # written before host_app was set
    assert verdict_of("django", stored, "s3cret-pass").needs_rehash
    assert verdict_of("werkzeug", stored, "s3cret-pass").needs_rehash


def test_the_session_auth_hash_is_djangos():
    host = DjangoHost(None, HostAppConfig(kind="meiduo", secret_key=SECRET), None)
    password = make_password("s3cret-pass")
    expected = salted_hmac(
        "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash",
        password,
        algorithm="sha256",
    ).hexdigest()
    assert host.auth_hash(password) == expected


def test_djangos_csrf_tokens_unmask_to_the_cookies_secret():
    secret = _get_new_csrf_string()
    assert csrf_secret(secret) == secret
    for _ in range(20):
        assert csrf_secret(_mask_cipher_secret(secret)) == secret
    for junk in ["", "x" * 31, "x" * 63, "!" * 32, "é" * 64]:
        assert csrf_secret(junk) is None
