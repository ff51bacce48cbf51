"""The prompt library: a person's own page of prompts, and the slash menu's list.

Another person's prompt answers 404 on every page here; the menu lists the person's own
prompts and the published ones, never anyone else's unpublished prompt (``chat.prompts``).
"""

from __future__ import annotations

from django.contrib import messages as flash
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chat import prompts
from chat.checks import ChatError
from chat.models import Prompt


def _form_context(title: str = "", text: str = "", error: str = "") -> dict[str, object]:
    return {"title": title, "text": text, "error": error, "max_title": prompts.MAX_TITLE}


@require_http_methods(["GET", "POST"])
def prompt_list(request: HttpRequest) -> HttpResponse:
    """The person's prompts, and the form that makes a new one."""
    context = _form_context()
    if request.method == "POST":
        title, text = request.POST.get("title", ""), request.POST.get("text", "")
        try:
            prompt = prompts.do_save_prompt(request.user, title, text)
        except ChatError as exc:
            context = _form_context(title, text, str(exc))
        else:
            flash.success(request, f"Saved “{prompt.title}”.")
            return redirect("chat:prompts")
    own = request.user.prompts.order_by("title", "pk")
    context["prompts"] = [(prompt, prompts.variables(prompt.text)) for prompt in own]
    return render(request, "chat/prompts.html", context)


@require_http_methods(["GET", "POST"])
def edit_prompt(request: HttpRequest, pk: int) -> HttpResponse:
    prompt = get_object_or_404(Prompt, pk=pk, owner=request.user)
    context = _form_context(prompt.title, prompt.text)
    if request.method == "POST":
        title, text = request.POST.get("title", ""), request.POST.get("text", "")
        try:
            prompts.do_save_prompt(request.user, title, text, prompt)
        except ChatError as exc:
            context = _form_context(title, text, str(exc))
        else:
            flash.success(request, f"Saved “{prompt.title}”.")
            return redirect("chat:prompts")
    context["prompt"] = prompt
    return render(request, "chat/prompt_edit.html", context)


@require_POST
def delete_prompt(request: HttpRequest, pk: int) -> HttpResponse:
    prompt = get_object_or_404(Prompt, pk=pk, owner=request.user)
    prompts.do_delete_prompt(prompt)
    flash.success(request, f"Deleted “{prompt.title}”.")
    return redirect("chat:prompts")


@require_GET
def prompt_menu(request: HttpRequest) -> JsonResponse:
    """The slash menu's choices for ``q``: JSON, so the page puts the text in as text."""
    found = prompts.usable(request.user, request.GET.get("q", ""))
    choices = [
        {"id": prompt.pk, "title": prompt.title, "text": prompt.text, "shared": prompt.published}
        for prompt in found
    ]
    response = JsonResponse({"prompts": choices})
    response["Cache-Control"] = "private, no-store"
    return response
