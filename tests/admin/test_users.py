"""Local users: the password policy on creation, no hashes in answers, lockout shared with /api/login."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from bastion.errors import InvalidParams
from bastion.identity.passwords import PasswordPolicy, verify_password
from bastion.logins import REFUSED
from bastion.store.repos.tokens import user_by_name
from bastion.store.tenancy import SYSTEM
from tests.harness import Bastion, run_bastion

GOOD = "violet-otter-harbour-91"


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short-1", "at least 12 characters"),
        ("password1234", None),
        ("Password", "at least 12 characters"),
        ("aaaaaaaaaaaaaaaa", "more than three different characters"),
        ("alice-is-my-password", "contain the user name"),
        ("correcthorsebatterystaple", "common password"),
    ],
)
def test_the_password_policy_names_what_a_password_lacks(password: str, problem: str | None) -> None:
    policy = PasswordPolicy(min_length=12)
    if problem is None:
        policy.check(password, username="alice")
        return
    with pytest.raises(InvalidParams, match=problem):
        policy.check(password, username="alice")


def test_an_admin_creates_a_user_whose_answer_holds_no_hash_and_whose_hash_is_argon2id(bastion: Bastion) -> None:
    created = bastion.ok("POST", "/api/users", json={"username": "alice", "password": GOOD})
    assert created["username"] == "alice" and not created["is_admin"]
    assert "password" not in str(created) and "argon2" not in str(created)
    listed = bastion.ok("GET", "/api/users")
    assert {"admin", "alice"} <= {user["username"] for user in listed}

    async def stored_hash() -> str:
        async with bastion.services.db.session(SYSTEM) as session:
            user = await user_by_name(session, "alice")
            assert user is not None
            return user.password_hash

    digest = anyio.run(stored_hash)
    assert digest.startswith("$argon2id$") and verify_password(digest, GOOD)


def test_a_weak_password_is_refused_with_the_reason_and_no_user_is_created(bastion: Bastion) -> None:
    response = bastion.api("POST", "/api/users", json={"username": "bob", "password": "bob"})
    assert response.status_code == 400
    assert "at least 12 characters" in response.json()["error"]["message"]
    assert "bob" not in {user["username"] for user in bastion.ok("GET", "/api/users")}


def test_a_member_signs_in_to_the_api_but_cannot_manage_users(bastion: Bastion) -> None:
    bastion.ok("POST", "/api/users", json={"username": "carol", "password": GOOD})  # role: member
    login = bastion.http.post("/api/login", json={"username": "carol", "password": GOOD})
    assert login.status_code == 200  # the token carries only what the member role grants
    headers = {"authorization": f"Bearer {login.json()['token']}"}
    refused = bastion.http.get("/api/users", headers=headers)
    assert refused.status_code == 403 and "users:read" in refused.json()["error"]["message"]
    assert bastion.http.get("/api/tokens", headers=headers).status_code == 200  # their own tokens
    assert bastion.http.get("/api/users").status_code == 401


def test_repeated_failed_admin_logins_lock_the_account_until_an_admin_unlocks_it(tmp_path: Path) -> None:
    with run_bastion(tmp_path, lockout_account_threshold=3) as bastion:
        user = bastion.ok("POST", "/api/users", json={"username": "dave", "password": GOOD, "roles": ["tenant-admin"]})
        for _ in range(3):
            wrong = bastion.http.post("/api/login", json={"username": "dave", "password": "not-the-password"})
            assert wrong.status_code == 401
        locked = bastion.http.post("/api/login", json={"username": "dave", "password": GOOD})
        assert locked.status_code == 401
        assert locked.json()["error"]["message"] == REFUSED  # as a wrong password: no name is told apart
        assert "retry-after" not in locked.headers

        unlocked = bastion.ok("POST", f"/api/users/{user['id']}/unlock")
        assert unlocked["failed_logins"] == 0 and unlocked["locked_until"] is None
        assert bastion.http.post("/api/login", json={"username": "dave", "password": GOOD}).status_code == 200
