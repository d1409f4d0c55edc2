from django.urls import path

from routing.openai_apis import ChatCompletionsView, ModelListView, ModelRetrieveView

urlpatterns = [
    path("chat/completions", ChatCompletionsView.as_view(), name="openai-chat-completions"),
    path("models", ModelListView.as_view(), name="openai-models"),
    # path: a routable id may hold a colon (auto:chatbot) or a slash (org/model).
    path("models/<path:model>", ModelRetrieveView.as_view(), name="openai-model"),
]
