"""One canonical number: the spellings table, and every family's routes using it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import urllib.parse

import pytest

from services.accounts.mobiles import canonical_mobile
from tests.conftest import ROOT
from tests.flows import FAMILY_PASSWORD as PASSWORD
from tests.flows import MeiduoClient, NewsClient

# (what a person or a front-end sends, the canonical number or None for PARAMERR)
SPELLINGS = [
    ("13812345678", "13812345678"),
    ("+8613812345678", "13812345678"),
    ("+86 138 1234 5678", "13812345678"),
    ("008613812345678", "13812345678"),
    ("0086 138 1234 5678", "13812345678"),
    ("8613812345678", "13812345678"),
    ("86-138-1234-5678", "13812345678"),
    ("138-1234-5678", "13812345678"),
    ("(+86) 138 1234 5678", "13812345678"),
    (" 138 1234 5678\t", "13812345678"),
    ("１３８１２３４５６７８", "13812345678"),  # full-width digits
    ("＋８６　１３８　１２３４　５６７８", "13812345678"),  # full-width plus and spaces
    ("19912345678", "19912345678"),  # 199: China Telecom
    ("16612345678", "16612345678"),  # 166: China Unicom
    ("17012345678", "17012345678"),  # 170: virtual operators (MVNO), real mobiles
    ("14712345678", "14712345678"),  # 147: data-plan mobile block that libphonenumber accepts
    ("14012345678", None),  # 140: IoT, not a person's phone
    ("14412345678", None),  # 144: IoT
    ("17412345678", None),  # 174: satellite
    ("12012345678", None),  # 12x: unassigned
    ("10012345678", None),  # 100: unassigned
    ("12345678901", None),
    ("1381234567", None),  # one digit short
    ("138123456789", None),  # one digit long
    ("+86 10 1234 5678", None),  # Beijing landline
    ("01012345678", None),  # Beijing landline, national form
    ("+852 9123 4567", None),  # Hong Kong mobile: another region
    ("+1 415 555 0100", None),
    ("138ABCD5678", None),  # letters would be read as a phone keypad: refused
    ("138 1234 5678 ext 9", None),
    ("١٣٨١٢٣٤٥٦٧٨", None),  # Arabic-Indic digits
    ("", None),
    ("+86", None),
    ("1" * 41, None),
]


@pytest.mark.parametrize(("spelled", "canonical"), SPELLINGS)
def test_canonical_mobile_table(spelled, canonical):
    assert canonical_mobile(spelled) == canonical


@pytest.mark.parametrize("value", [None, 13812345678, ["13812345678"], {"m": 1}, b"13812345678"])
def test_non_strings_are_not_mobiles(value):
    assert canonical_mobile(value) is None


@pytest.mark.gen_test(timeout=60)
async def test_meiduo_routes_use_the_canonical_number(client, sandbox, fresh_mobile):
    meiduo = MeiduoClient(client)
    mobile = fresh_mobile()
    spelled = f"+86 {mobile[:3]}-{mobile[3:7]}-{mobile[7:]}"
    image_uuid, text = await meiduo.image()
    answer = await meiduo.sms(urllib.parse.quote(spelled), text, image_uuid)
    assert answer["code"] == "0", answer
    [message] = sandbox.inbox(mobile)
    fields = {
        "username": "meiduo_fan",
        "password": PASSWORD,
        "password2": PASSWORD,
        "mobile": f"0086{mobile}",
        "sms_code": message["datas"][0],
        "allow": "on",
    }
    response = await meiduo.post_form("/register/", fields)
    assert response.code == 302, response.body
    assert (await meiduo.get_json(f"/mobiles/{mobile}/count/"))["count"] == 1
    # Login by mobile under another spelling, then a refused IoT number.
    await client.fetch("/logout/")
    response = await meiduo.post_form("/login/", {"username": spelled, "password": PASSWORD})
    assert response.code == 302
    image_uuid, text = await meiduo.image()
    assert (await meiduo.sms("14012345678", text, image_uuid))["code"] == "4007"


@pytest.mark.gen_test(timeout=60)
async def test_news_routes_use_the_canonical_number(client, sandbox, fresh_mobile):
    news = NewsClient(client)
    await client.fetch("/api/v1.0/image_codes/bootstrap")
    mobile = fresh_mobile()
    image_id, text = await news.image()
    sms = {"mobile": f"+86{mobile}", "image_code": text, "image_code_id": image_id}
    assert (await news.post("/passport/sms_code", sms))["errno"] == "0"
    code = sandbox.inbox(mobile)[-1]["datas"][0]
    register = {"mobile": f"86 {mobile}", "smscode": code, "password": PASSWORD}
    assert (await news.post("/passport/register", register))["errno"] == "0"
    row = await client.app.services.db.fetch_one(
        "SELECT name, mobile FROM ih_user_profile WHERE mobile = %s", (mobile,)
    )
    assert row == (mobile, mobile)
    login = {"mobile": f"0086-{mobile}", "passport": PASSWORD}
    assert (await news.post("/passport/login", login))["errno"] == "0"
    image_id, text = await news.image()
    iot = {"mobile": "+86 144 1234 5678", "image_code": text, "image_code_id": image_id}
    assert (await news.post("/passport/sms_code", iot)) == {
        "errno": "4103",
        "errmsg": "手机号格式错误",
    }


def test_check_command_lists_non_canonical_and_duplicate_mobiles(
    mariadb_server, config, clean_state
):
    """scripts/check_mobiles.py, the migration check, against a table fed by older code."""
    rows = [
        ("alice", "13812345678"),
        ("alice2", "１３８１２３４５６７８"),  # the same number in full-width digits
        ("bob", "13912345678"),
        ("iot", "14012345678"),
    ]
    with contextlib.closing(mariadb_server.admin_connection()) as conn, conn.cursor() as cur:
        # A legacy table without the unique index, as other systems may have kept it.
        cur.execute("DROP TABLE IF EXISTS legacy_users")
        cur.execute(
            "CREATE TABLE legacy_users (id INT PRIMARY KEY AUTO_INCREMENT, name "
            "VARCHAR(32), mobile VARCHAR(20)) CHARSET utf8mb4"
        )
        cur.executemany("INSERT INTO legacy_users (name, mobile) VALUES (%s, %s)", rows)
    env = {**os.environ, "SMSREG_MYSQL_PORT": str(config.mysql.port)}
    command = [sys.executable, "-m", "scripts.check_mobiles", "--table", "legacy_users"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        "non-canonical id=2 stored='１３８１２３４５６７８' canonical=13812345678",
        "non-canonical id=4 stored='14012345678' canonical=invalid",
        "duplicate 13812345678 ids=1,2",
        "2 non-canonical, 1 numbers held by several rows",
    ]
    with contextlib.closing(mariadb_server.admin_connection()) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM legacy_users WHERE id IN (2, 4)")
    clean = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert (clean.returncode, clean.stdout) == (
        0,
        "0 non-canonical, 0 numbers held by several rows\n",
    )
    missing = subprocess.run(
        [*command[:3], "--table", "no_such_table"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 2 and "no_such_table" in missing.stderr
