# The image the Helm chart runs (API, operator and engine share it). The control plane is not in
# it: inside a real cluster the simulator uses that cluster (the chart can add KWOK for fake nodes).
FROM python:3.11-slim
# A normal (not editable) install: the cluster's data ships inside the k8sim package. The sources
# are built from /src and removed, so no folder named like a package shadows the installed one.
COPY pyproject.toml README.md /src/
COPY k8sim /src/k8sim
COPY api /src/api
COPY operator /src/operator
COPY engine /src/engine
ENV PYTHONDONTWRITEBYTECODE=1
RUN pip install --no-cache-dir /src && rm -rf /src && useradd --create-home --uid 10001 k8sim
WORKDIR /home/k8sim
USER 10001
EXPOSE 6360 6381
CMD ["python", "-m", "k8sim_api"]
