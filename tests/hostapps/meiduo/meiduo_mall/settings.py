"""meiduo_mall's settings/dev.py reduced to what a login touches (seed-systems.md §2,
integration-anchors.md), on Django 5.2 and django-redis 7, pointed at the harness's MariaDB and
Redis through HOSTAPP_* environment variables. Everything else is Django's default, as in
meiduo: PASSWORD_HASHERS, SESSION_COOKIE_AGE (2 weeks), the cookie names."""

import os

import pymysql

pymysql.install_as_MySQLdb()

env = os.environ

SECRET_KEY = env["HOSTAPP_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "users",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "meiduo_mall.urls"
WSGI_APPLICATION = "meiduo_mall.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.mysql",
        "HOST": "127.0.0.1",
        "PORT": int(env["HOSTAPP_MYSQL_PORT"]),
        "USER": env["HOSTAPP_MYSQL_USER"],
        "PASSWORD": env["HOSTAPP_MYSQL_PASSWORD"],
        "NAME": env["HOSTAPP_MYSQL_DATABASE"],
        "OPTIONS": {"charset": "utf8mb4"},
    },
}
# meiduo's tables have int ids (Django 1.11's AutoField).
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": env["HOSTAPP_REDIS_CACHE_URL"],
        "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
    },
    "session": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": env["HOSTAPP_REDIS_URL"],
        "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
    },
}
SESSION_ENGINE = "django.contrib.sessions.backends.cache"
SESSION_CACHE_ALIAS = "session"

AUTH_USER_MODEL = "users.User"
AUTHENTICATION_BACKENDS = ["users.utils.UsernameMobileAuthBackend"]
LOGIN_URL = "/host/login/"

LANGUAGE_CODE = "zh-hans"
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

# Errors to stderr, which the harness keeps in the app's log file.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django": {"handlers": ["console"], "level": "WARNING"}},
}
