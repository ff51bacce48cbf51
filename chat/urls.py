from django.urls import path

from chat import attachment_views, exports, import_views, share_views, views

app_name = "chat"
urlpatterns = [
    path("", views.home, name="home"),
    path("conversations/new/", views.new_conversation, name="new"),
    path("conversations/<int:pk>/", views.conversation_detail, name="conversation"),
    path("conversations/<int:pk>/settings/", views.update_settings, name="settings"),
    path("conversations/<int:pk>/rename/", views.rename_conversation, name="rename"),
    path("conversations/<int:pk>/delete/", views.delete_conversation, name="delete"),
    path("conversations/search/", views.search, name="search"),
    path("replies/<int:pk>/stop/", views.stop_reply, name="stop"),
    path("replies/<int:pk>/feedback/", views.rate_reply, name="feedback"),
    path("messages/<int:pk>/source/", views.message_source, name="source"),
    path("sessions/end-others/", views.end_other_sessions, name="end_other_sessions"),
    path("conversations/<int:pk>/shares/", share_views.share_links, name="share_links"),
    path("conversations/<int:pk>/shares/new/", share_views.make_share_link, name="make_share_link"),
    path("shares/<int:pk>/revoke/", share_views.revoke_share_link, name="revoke_share_link"),
    path("shared/<str:token>/", share_views.shared, name="shared"),
    path("shared/<str:token>/continue/", share_views.continue_shared, name="continue_shared"),
    path("attachments/", attachment_views.upload, name="upload"),
    path("attachments/<str:key>/", attachment_views.download, name="attachment"),
    path("attachments/signed/<str:token>/", attachment_views.signed, name="signed_attachment"),
    path("export/", exports.download_mine, name="export"),
    path("import/", import_views.import_conversations, name="import"),
    path("highlight.css", views.pygments_css, name="pygments_css"),
]
