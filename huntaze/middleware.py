"""WhiteNoise, async-capable: static files as before, and no sync hop for every request.

WhiteNoise's own middleware is sync-only, so under ASGI Django ran everything below it (the
async completion views included) through a thread and back for each request.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from whitenoise.middleware import WhiteNoiseMiddleware


class AsyncWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    async_capable = True
    sync_capable = True

    def __init__(self, get_response) -> None:
        super().__init__(get_response)
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self._async:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request):
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            response = await sync_to_async(self.serve)(static_file, request)
            if response.streaming and not response.is_async:
                # Read the file in the thread as Django would, but hand Django an async
                # iterator: given the file's own, it warns on every static file that
                # "StreamingHttpResponse must consume synchronous iterators".
                chunks = await sync_to_async(list, thread_sensitive=False)(
                    response.streaming_content
                )
                response.streaming_content = _replayed(chunks)
            return response
        return await self.get_response(request)


async def _replayed(chunks: list[bytes]):
    for chunk in chunks:
        yield chunk
