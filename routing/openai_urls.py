from django.urls import path

from routing.openai_apis import ChatCompletionsView, ModelListView

urlpatterns = [
    path("chat/completions", ChatCompletionsView.as_view(), name="openai-chat-completions"),
    path("models", ModelListView.as_view(), name="openai-models"),
]
