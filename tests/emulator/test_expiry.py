"""Session expiry: lazily at expires_at, or at once through expire()."""

from __future__ import annotations


def test_session_past_expires_at_reads_as_expired(api):
    api.emulator.configure(session_ttl=0)
    session_id = api.create_session()["session_id"]

    data = api.retrieve(session_id).json()["data"]

    assert data["status"] == "expired"
    assert data["completed_at"] is None


def test_expired_session_cannot_be_paid(api, http):
    api.emulator.configure(session_ttl=0)
    session = api.create_session()

    response = http.post(f"{session['payment_url']}/pay", allow_redirects=False, timeout=5)

    assert response.status_code == 409
    assert api.emulator.events() == []


def test_expire_ends_a_pending_session_now(api):
    created = api.create_session()

    snapshot = api.emulator.expire(created["session_id"])

    data = api.retrieve(created["session_id"]).json()["data"]
    assert data["status"] == snapshot["status"] == "expired"
    # ISO-8601 UTC strings of one format compare in time order.
    assert data["created_at"] <= data["expires_at"] < created["expires_at"]


def test_session_ttl_change_applies_to_new_sessions_only(api):
    earlier = api.create_session()["session_id"]
    api.emulator.configure(session_ttl=0)

    assert api.retrieve(earlier).json()["data"]["status"] == "pending"
    assert api.retrieve(api.create_session()["session_id"]).json()["data"]["status"] == "expired"
