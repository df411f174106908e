variable "name" {
  description = "Name prefix, e.g. `magento-production`."
  type        = string
}

variable "cidr" {
  description = "VPC CIDR block."
  type        = string
  default     = "10.0.0.0/16"
}

variable "azs" {
  description = "Availability zones (three for production: Aurora and the frontend spread over them)."
  type        = list(string)
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all zones (staging) instead of one per zone (production: a zone outage must not cut the others off)."
  type        = bool
  default     = false
}

variable "interface_endpoints" {
  description = "Interface VPC endpoints: AWS APIs reached without the NAT (cheaper, and image pulls keep working when the NAT is the problem)."
  type        = list(string)
  default     = ["sqs", "secretsmanager", "ecr.api", "ecr.dkr", "sts", "logs"]
}

variable "cluster_name" {
  description = "EKS cluster name, for the subnet tags the load balancer controller and Karpenter discover."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
