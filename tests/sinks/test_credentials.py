from concur_postback.sinks.credentials import MASK, scrub, userinfo


def test_user_info_shows_the_user_and_masks_only_a_password() -> None:
    assert userinfo("alice", "s3cret") == f"alice:{MASK}@"
    assert userinfo(None, "s3cret") == f":{MASK}@"
    assert userinfo("alice", None) == "alice@"
    assert userinfo("u@x", "") == "u%40x@"
    assert userinfo(None, None) == ""


def test_scrub_masks_every_secret_longest_first_on_one_line() -> None:
    message = "auth failed for hunter2-long\n  (tried hunter2)"
    assert scrub(message, ["hunter2", "hunter2-long"]) == f"auth failed for {MASK} (tried {MASK})"


def test_scrub_leaves_secrets_too_short_to_mask_without_garbling() -> None:
    assert scrub("a bad request", ["a"]) == "a bad request"
