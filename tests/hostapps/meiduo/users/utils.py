import re

from django.contrib.auth.backends import ModelBackend

from users.models import User


def get_user_by_account(account):
    """A mobile number finds the user by mobile, anything else by username."""
    try:
        if re.match(r"^1[3-9]\d{9}$", account):
            return User.objects.get(mobile=account)
        return User.objects.get(username=account)
    except User.DoesNotExist:
        return None


class UsernameMobileAuthBackend(ModelBackend):
    """meiduo's backend: log in with the username or the mobile."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        user = get_user_by_account(username or "")
        if user and user.check_password(password):
            return user
        return None
