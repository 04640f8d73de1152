from django.urls import path
from users import views

urlpatterns = [
    # meiduo's own pages of its register and login (contents:index, users:register): behind
    # nginx (docs/deploy/host-apps/meiduo.conf) their forms post to our server.
    path("", views.IndexView.as_view(), name="index"),
    path("register/", views.RegisterView.as_view(), name="register"),
    path("favicon.ico", views.favicon),
    path("host/login/", views.LoginView.as_view(), name="login"),
    path("host/logout/", views.LogoutView.as_view(), name="logout"),
    path("host/info/", views.UserInfoView.as_view(), name="info"),
    path("host/form/", views.FormView.as_view(), name="form"),
    path("host/users/", views.create_user, name="create_user"),
    path("host/check_password/", views.check_password, name="check_password"),
]
