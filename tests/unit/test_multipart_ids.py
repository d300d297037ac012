"""Upload ids as clients pass them around."""

from shoal.storage.multipart import new_upload_id


def test_upload_ids_never_look_like_a_command_line_option() -> None:
    # token_urlsafe starts with "-" or "_" 1 time in 32: 3,000 draws meet it for sure.
    ids = {new_upload_id() for _ in range(3000)}
    assert len(ids) == 3000
    assert all(i[0].isalnum() and len(i) >= 40 for i in ids)
