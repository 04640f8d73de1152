from django.urls import path
from users import views

urlpatterns = [
    path("host/login/", views.LoginView.as_view(), name="login"),
    path("host/logout/", views.LogoutView.as_view(), name="logout"),
    path("host/info/", views.UserInfoView.as_view(), name="info"),
    path("host/form/", views.FormView.as_view(), name="form"),
    path("host/users/", views.create_user, name="create_user"),
    path("host/check_password/", views.check_password, name="check_password"),
]
