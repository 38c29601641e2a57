"""Entra ID and managed-identity token errors, turned into a cause and a fix.

The identity endpoint relays Entra's `AADSTSnnnnn` message inside azure-identity's own text
("App Service managed identity configuration not found ... Token request error: ..."), which
misleads more than it helps. This finds the code, and says what is missing where.
Codes: https://learn.microsoft.com/entra/identity-platform/reference-error-codes
"""

from __future__ import annotations

import re
from dataclasses import dataclass

AADSTS = re.compile(r"AADSTS(\d+):?\s*(.*?)(?=\s*(?:Trace ID:|Correlation ID:|Timestamp:|$))", re.DOTALL)


@dataclass(frozen=True)
class EntraProblem:
    code: str  # "AADSTS500011", or a short tag for endpoint errors ("identity_not_found")
    cause: str
    fix: str
    entra_message: str  # Entra's own words, trimmed (no trace IDs)


def entra_code(message: str) -> tuple[str, str] | None:
    """(`AADSTSnnnn`, Entra's sentence) found in `message`, or None."""
    match = AADSTS.search(message)
    if match is None:
        return None
    return f"AADSTS{match.group(1)}", " ".join(match.group(2).split())[:400]


def explain(message: str, *, resource: str, who: str, setting: str | None = None) -> EntraProblem:
    """Cause and fix for a failed token request for `resource` by `who`.

    `setting` names the app setting that holds `resource` (None for fixed resources such as
    storage), so the fix can say which value to correct.
    """
    found = entra_code(message)
    code, said = found if found else ("", " ".join(message.split())[:400])
    where = f" ({setting})" if setting else ""
    if code in ("AADSTS500011", "AADSTS50001"):
        return EntraProblem(
            code, f"Entra ID has no application with the App ID URI {resource}{where} in this tenant, "
            "or no service principal (enterprise application) for it",
            f"set {setting or 'the resource'} to the API app registration's Application ID URI exactly "
            "(Expose an API > Application ID URI), and make sure the app has a service principal in the "
            "identity's tenant (`az ad sp create --id <api-app-id>`)", said)
    if code == "AADSTS501051":
        return EntraProblem(
            code, f"the application behind {resource} requires app role assignment (Assignment required? = "
            f"Yes) and {who} has no app role assignment on it",
            f"assign one of the API's app roles to {who}'s service principal (Graph: POST "
            "/servicePrincipals/<identity-object-id>/appRoleAssignments with principalId, resourceId = the "
            "API's service principal, appRoleId), or set Assignment required? to No only if every identity "
            "in the tenant may reach the AWS role (then the trust policy's sub condition is the only gate)",
            said)
    if code == "AADSTS90009":
        return EntraProblem(
            code, f"Entra refused the identifier URI form of {resource}{where}: an app requesting a token "
            "for itself must name the resource by its GUID-based App ID",
            f"set {setting or 'the resource'} to api://<api-app-id> (the GUID form), and use a separate app "
            "registration for the API than for the caller", said)
    if code == "AADSTS70011":
        return EntraProblem(
            code, f"{resource}{where} is not a valid resource identifier for a token request",
            f"set {setting or 'the resource'} to the Application ID URI alone, e.g. api://<tenant-id>/crosscloud "
            "(no /.default, no scope name, no trailing path)", said)
    if code == "AADSTS500014":
        return EntraProblem(code, f"the service principal for {resource} is disabled in the tenant",
                            "enable the API's enterprise application (Properties > Enabled for users to sign-in)",
                            said)
    if code in ("AADSTS70021", "AADSTS700211", "AADSTS700213"):
        return EntraProblem(code, "no federated identity credential on the identity matches the presented "
                            "workload token (issuer/subject)",
                            "add a federated credential for this workload's issuer and subject to the identity",
                            said)
    low = message.lower()
    if "no user assigned" in low or "identity not found" in low or "unable to load the proper managed" in low:
        return EntraProblem(
            "identity_not_found", f"the managed identity endpoint has no {who}: AZURE_CLIENT_ID names an "
            "identity that is not attached to this app",
            "attach that user-assigned identity to the Function App (Identity > User assigned), or fix "
            "AZURE_CLIENT_ID (unset it to use the system-assigned identity)", said)
    if not found and ("unavailable" in low or "no response from the imds" in low
                      or "not found in environment" in low):
        return EntraProblem(
            "identity_unavailable", "no managed identity endpoint answered: the process is not running on Azure "
            "compute with an identity (App Service IDENTITY_ENDPOINT/IDENTITY_HEADER or IMDS)",
            "enable a managed identity on the Function App (Identity blade); locally, start the devstack", said)
    return EntraProblem(code or "token_error", f"{who} could not get a token for {resource}{where}",
                        "read Entra's message above; https://login.microsoftonline.com/error?code=<number> "
                        "explains AADSTS codes", said)
